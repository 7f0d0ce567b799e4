"""`tpt codec-server` and `tpt codec …`: serve the codec to the Web UI, make and list keys."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from tpt.cli_support import EXIT_BAD_INPUT, fail, load_settings

app = typer.Typer(no_args_is_help=True, help="Payload encryption keys (the codec server is `tpt codec-server`).")


def codec_server() -> None:
    """Serve Temporal's remote codec (POST /encode, /decode) so the Web UI shows decrypted payloads.

    Keys from TPT_CODEC_KEY_FILE or TPT_CODEC_KEYS; listens on TPT_CODEC_SERVER_HOST:TPT_CODEC_SERVER_PORT
    (default 127.0.0.1, UI port + 1), answers only TPT_CODEC_UI_ORIGINS, and requires TPT_CODEC_TOKEN when set.
    Point the UI at it: `temporal server start-dev --ui-codec-endpoint URL` or the UI's Codec Server settings."""
    from tpt.codec import EncryptionCodec, KeyringError, keyring_for
    from tpt.codec.server import CodecServer, CodecServerError, config_from_settings

    settings = load_settings()
    try:
        keyring = keyring_for(settings)
        server = CodecServer(config_from_settings(settings, EncryptionCodec(keyring)))
    except KeyringError as err:
        fail(str(err), EXIT_BAD_INPUT)
    except CodecServerError as err:
        fail(str(err))

    def stop(*_: object) -> None:
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    assert keyring is not None
    typer.echo(f"codec server on {server.url} (keys {', '.join(keyring.ids)}; current {keyring.current}); "
               f"UI origins {', '.join(server.config.origins)}; token {'required' if server.config.token else 'off'}",
               err=True)
    server.serve_forever()
    server.httpd.server_close()


KeyFile = Annotated[Path | None, typer.Option("--key-file", help="add the key to this keyring file (created 0600 "
                                                "if missing) and make it current; the old keys stay to decrypt")]
KeyId = Annotated[str | None, typer.Option("--id", help="key id (default: k<UTC timestamp>)")]


@app.command("keygen")
def keygen(key_file: KeyFile = None, key_id: KeyId = None) -> None:
    """Make a new AES-256 key: printed as `id:base64key` for TPT_CODEC_KEYS, or added to a key file (rotation)."""
    from tpt.codec.keyring import KEY_ID, KeyringError, add_key, encode_key, new_key, new_key_id

    try:
        if key_file is not None:
            made = add_key(key_file, key_id)
            typer.echo(f"added key {made} to {key_file} as the current key; restart workers, clients and the "
                       "codec server to encrypt with it", err=True)
            return
    except KeyringError as err:
        fail(str(err), EXIT_BAD_INPUT)
    key_id = key_id or new_key_id()
    if not KEY_ID.match(key_id):
        fail(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'", EXIT_BAD_INPUT)
    typer.echo(f"{key_id}:{encode_key(new_key())}")


@app.command("keys")
def keys() -> None:
    """Which keyring this environment uses: its source, key ids and current key (never the keys themselves)."""
    from tpt.codec import KeyringError, keyring_for

    try:
        keyring = keyring_for(load_settings())
    except KeyringError as err:
        fail(str(err), EXIT_BAD_INPUT)
    if keyring is None:
        typer.echo("no codec keyring configured: payloads are not encrypted "
                   "(set TPT_CODEC_KEY_FILE or TPT_CODEC_KEYS)")
        return
    typer.echo(f"source   {keyring.source}")
    for key_id in keyring.ids:
        typer.echo(f"key      {key_id}{'  (current: encrypts)' if key_id == keyring.current else ''}")
