-- The signer registry (signed decisions): each signer's, reviewer's and operator's Ed25519 public key, the nation
-- and role it signs for, and when it is valid. Managed by an administrator (`tpt keys add|revoke|list`, with the
-- owner's TPT_DATABASE_URL); the worker only reads it, into a transfer's state when a stage starts.
CREATE TABLE signer_keys (
    key_id            text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    actor             text        NOT NULL CHECK (actor <> ''),
    nation            text        NOT NULL CHECK (nation ~ '^[A-Z]{2,8}$'),
    role              text        NOT NULL CHECK (role <> ''),
    public_key        text        NOT NULL UNIQUE CHECK (public_key ~ '^[A-Za-z0-9+/]{43}=$'),
    valid_from        timestamptz NOT NULL DEFAULT now(),
    valid_until       timestamptz CHECK (valid_until IS NULL OR valid_until > valid_from),
    revoked_at        timestamptz,
    revoked_by        text,
    revocation_reason text,
    added_by          text        NOT NULL CHECK (added_by <> ''),
    added_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX signer_keys_nation_role ON signer_keys (nation, role);
CREATE INDEX signer_keys_actor ON signer_keys (actor);

-- A registered key is evidence for every decision it signed: never deleted or altered. It can be revoked once,
-- and its validity can end earlier; nothing else changes.
CREATE FUNCTION signer_keys_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'signer_keys keeps every key ever registered: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege', HINT = 'revoke the key instead (`tpt keys revoke`)';
    END IF;
    IF (NEW.key_id, NEW.actor, NEW.nation, NEW.role, NEW.public_key, NEW.valid_from, NEW.added_by, NEW.added_at)
       IS DISTINCT FROM
       (OLD.key_id, OLD.actor, OLD.nation, OLD.role, OLD.public_key, OLD.valid_from, OLD.added_by, OLD.added_at) THEN
        RAISE EXCEPTION 'a registered key cannot be changed'
            USING ERRCODE = 'insufficient_privilege', HINT = 'revoke it and register a new key';
    END IF;
    IF OLD.revoked_at IS NOT NULL
       AND (NEW.revoked_at, NEW.revoked_by, NEW.revocation_reason)
           IS DISTINCT FROM (OLD.revoked_at, OLD.revoked_by, OLD.revocation_reason) THEN
        RAISE EXCEPTION 'key % is already revoked; a revocation is final', OLD.key_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.valid_until IS NOT NULL AND (NEW.valid_until IS NULL OR NEW.valid_until > OLD.valid_until) THEN
        RAISE EXCEPTION 'the validity of key % can be shortened, not extended', OLD.key_id
            USING ERRCODE = 'insufficient_privilege', HINT = 'register a new key';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER signer_keys_guard BEFORE UPDATE OR DELETE ON signer_keys
    FOR EACH ROW EXECUTE FUNCTION signer_keys_guard();
CREATE TRIGGER signer_keys_no_truncate BEFORE TRUNCATE ON signer_keys
    FOR EACH STATEMENT EXECUTE FUNCTION signer_keys_guard();

-- The worker reads the registry and nothing more; it keeps only its audit grants of 0001 (append events, maintain
-- the projection). No role but the owner may create objects in the schema (the default from Postgres 15 on).
REVOKE ALL ON signer_keys FROM PUBLIC;
GRANT SELECT ON signer_keys TO tpt_worker;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
