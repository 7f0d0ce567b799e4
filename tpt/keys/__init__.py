"""The signer registry in Postgres (`signer_keys`) and the `tpt keys` command that manages it."""
