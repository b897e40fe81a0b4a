//! `mcp-runtime token keygen` and `token mint`: the issuer's side of session tokens. The private
//! key stays with whoever mints; gateways get the public key (`--token-public-keys-file`).

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use mcp_runtime_token::{Identity, KeyError, SigningKey};

use crate::cli::{TokenKeygenArgs, TokenMintArgs};
use crate::commands::access::parse_lifetime;
use crate::error::{CliError, Result};

/// File names `keygen` writes in its directory.
pub const PRIVATE_KEY_FILE: &str = "token.key";
pub const PUBLIC_KEY_FILE: &str = "token.pub";

/// A new key from the system's randomness.
pub fn generate() -> Result<SigningKey> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|source| CliError::Read {
            path: "/dev/urandom".into(),
            source,
        })?;
    let key = SigningKey::from_seed(&seed);
    seed.fill(0);
    Ok(key)
}

/// Creates `path` with mode 0600 from the start (never readable by others, not even briefly),
/// refusing to replace an existing file unless `replace`.
pub fn write_private(path: &Path, text: &str, replace: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| CliError::Write {
        path: path.to_owned(),
        source,
    };
    if replace {
        // A new file, not a truncated old one: the old one may have a wider mode.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
            _ => {}
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::hint(
                    format!("{} already exists", path.display()),
                    "pass --force to replace it (tokens it signed stop verifying once gateways drop its public key)",
                )
            } else {
                error(e)
            }
        })?;
    file.write_all(text.as_bytes()).map_err(error)
}

/// Reads the issuer's private key, explaining the usual mix-ups.
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })?;
    SigningKey::from_pem(&bytes).map_err(|e| {
        let message = format!("{}: {e}", path.display());
        match e {
            KeyError::PublicKeyGiven => CliError::hint(
                message,
                format!("give the private key: `token keygen` writes it as {PRIVATE_KEY_FILE} next to {PUBLIC_KEY_FILE}"),
            ),
            KeyError::NotPem => CliError::hint(
                message,
                "create a key pair with `mcp-runtime token keygen --out DIR`, mint with \
                 --key DIR/token.key and give gateways --token-public-keys-file DIR/token.pub \
                 (tokens signed with the old secret stop verifying)",
            ),
            _ => CliError::hint(
                message,
                "expected an unencrypted Ed25519 key in PKCS#8 PEM, as `mcp-runtime token keygen` \
                 or `openssl genpkey -algorithm ed25519` write",
            ),
        }
    })
}

pub fn keygen(args: TokenKeygenArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out).map_err(|source| CliError::Write {
        path: args.out.clone(),
        source,
    })?;
    let key = generate()?;
    let private = args.out.join(PRIVATE_KEY_FILE);
    let public = args.out.join(PUBLIC_KEY_FILE);
    if !args.force && public.exists() {
        return Err(CliError::hint(
            format!("{} already exists", public.display()),
            "pass --force to replace the key pair",
        ));
    }
    write_private(&private, &key.to_pem(), args.force)?;
    std::fs::write(&public, key.public_pem()).map_err(|source| CliError::Write {
        path: public.clone(),
        source,
    })?;
    eprintln!(
        "wrote {} (private, mode 0600: keep it with the issuer) and {} (public: give it to gateways)",
        private.display(),
        public.display()
    );
    crate::output::write_stdout(&mut std::io::stdout().lock(), &format!("{}\n", key.kid()))
}

pub fn mint(args: TokenMintArgs) -> Result<()> {
    let key = read_signing_key(&args.key)?;
    if !args.server.contains('/') {
        return Err(CliError::hint(
            format!("--server `{}` must be NAMESPACE/NAME", args.server),
            "e.g. --server demo/hello",
        ));
    }
    let identity = Identity {
        human: args.human,
        agent: args.agent,
        team: args.team,
        session: args.session,
    };
    let token = key
        .mint(
            &args.server,
            identity,
            Timestamp::now(),
            parse_lifetime(&args.ttl)?,
        )
        .map_err(|e| {
            CliError::hint(
                e.to_string(),
                "give at least one of --human, --agent, --team",
            )
        })?;
    crate::output::write_stdout(&mut std::io::stdout().lock(), &format!("{token}\n"))
}
