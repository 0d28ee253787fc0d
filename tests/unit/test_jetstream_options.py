"""bridge.jetstream.options (auth, TLS, URLs → ``nats.connect`` options and ``ssl.SSLContext``), the config rules
of those fields (``lint``), and ``max_reconnects`` → ``retry.reconnect_attempts``.

The servers are in tests/integration (test_nats_auth, test_nats_tls); here: what each field turns into.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import nkeys
import pytest
import trustme

from bridge.core.config import TLS, ClientCert, NatsAuth, parse
from bridge.core.errors import ConfigError
from bridge.core.tls import ssl_context
from bridge.jetstream.options import ConnectOptions, auth_options, connect_options, split_url_credentials
from bridge.run import retry
from tests.integration.secured_support import User, encrypted_key, keypair, leaf, public, seed


def config(output: str = "", urls: str = "[nats://127.0.0.1:4222]", inp: str = "") -> str:
    """A config whose ``nats_jetstream`` has ``output`` (YAML lines indented under it)."""
    return (
        "input:\n  kafka_franz:\n    seed_brokers: [k:9092]\n    topics: [t]\n    consumer_group: g\n"
        + "".join(f"    {line}\n" for line in inp.splitlines())
        + f"output:\n  label: my-bridge\n  nats_jetstream:\n    urls: {urls}\n    subject: s\n"
        + "".join(f"    {line}\n" for line in output.splitlines())
    )


def options(output: str = "", urls: str = "[nats://127.0.0.1:4222]") -> ConnectOptions:
    loaded = parse(config(output, urls), environ={})
    return connect_options(loaded.output, loaded.config.output.label)


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text, environ={})
    return [(p.path, p.message) for p in info.value.problems]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


# ----------------------------------------------------------------------------------- connection fields


def test_urls_comma_items_are_split_and_label_is_the_connection_name() -> None:
    opts = options(urls='["nats://a:4222,nats://b:4222", " nats://c:4222 "]')
    assert opts["servers"] == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert opts["name"] == "my-bridge"
    assert opts["allow_reconnect"] is False  # the sink reconnects itself (bridge.run.retry.nats_connect)
    assert opts["tls_handshake_first"] is False
    assert "tls" not in opts
    assert opts.problem is None


def test_tls_handshake_first_is_passed() -> None:
    assert options("tls_handshake_first: true")["tls_handshake_first"] is True


@pytest.mark.parametrize(
    ("max_reconnects", "attempts"),
    [(None, 60), (-1, None), (-5, None), (0, 1), (1, 1), (7, 7)],
    ids=["unset-60", "negative-forever", "very-negative-forever", "zero-only-the-first", "one", "seven"],
)
def test_max_reconnects_means_what_redpanda_connect_says(
    max_reconnects: int | None, attempts: int | None
) -> None:
    """unset = 60 attempts, negative = forever (None), 0 = never *re*connect: the first connection still
    gets its one attempt (the sink refuses a reconnection outright when it is 0)."""
    assert retry.reconnect_attempts(max_reconnects) == attempts


def test_max_reconnects_is_an_int_or_unset() -> None:
    assert parse(config("max_reconnects: -1"), environ={}).output.max_reconnects == -1
    assert parse(config(), environ={}).output.max_reconnects is None
    assert problems(config("max_reconnects: often"))[0][0] == "output.nats_jetstream.max_reconnects"


# ----------------------------------------------------------------------------------- credentials in URLs


@pytest.mark.parametrize(
    ("urls", "servers", "auth"),
    [
        (("nats://u:p@a:1", "nats://u:p@b:2"), ["nats://a:1", "nats://b:2"], {"user": "u", "password": "p"}),
        (("nats://s3cr3t@a:1",), ["nats://a:1"], {"token": "s3cr3t"}),
        (("nats://u:p%40ss%3A@a:1",), ["nats://a:1"], {"user": "u", "password": "p@ss:"}),
        (("u:p@a:1",), ["nats://a:1"], {"user": "u", "password": "p"}),
        (("nats://a:1", "nats://b:2"), ["nats://a:1", "nats://b:2"], {}),
        # different credentials per URL (or some without): kept in the URLs, nats-py sends each its own
        (("nats://u:p@a:1", "nats://v:q@b:2"), ["nats://u:p@a:1", "nats://v:q@b:2"], {}),
        (("nats://u:p@a:1", "nats://b:2"), ["nats://u:p@a:1", "nats://b:2"], {}),
        # every URL gets a scheme, so that bridge.ops.log.redact_text recognizes it when it is printed
        (("tok@a", "b:2"), ["nats://tok@a", "nats://b:2"], {}),
    ],
    ids=[
        "user-password",
        "token",
        "percent-encoded",
        "no-scheme",
        "none",
        "differing",
        "partial",
        "partial-no-scheme",
    ],
)
def test_url_credentials_move_out_of_the_urls(urls: tuple[str, ...], servers: list[str], auth: dict) -> None:
    assert split_url_credentials(urls) == (servers, auth)


def test_url_credentials_become_connect_options() -> None:
    opts = options(urls="[nats://alice:pw@127.0.0.1:4222]")
    assert opts["servers"] == ["nats://127.0.0.1:4222"]
    assert (opts["user"], opts["password"]) == ("alice", "pw")


# ----------------------------------------------------------------------------------- auth


def test_each_auth_method_maps_to_its_nats_py_option(tmp_path: Path) -> None:
    kp = keypair(nkeys.PREFIX_BYTE_USER)
    assert auth_options(parse(config("auth:\n  token: t"), environ={}).output.auth) == {"token": "t"}
    assert options("auth:\n  user: u\n  password: p")["user"] == "u"
    assert options(f"auth:\n  nkey: {seed(kp)}")["nkeys_seed_str"] == seed(kp)
    (tmp_path / "u.nk").write_text(seed(kp) + "\n")
    assert options(f"auth:\n  nkey_file: {tmp_path / 'u.nk'}")["nkeys_seed_str"] == seed(kp)
    creds = tmp_path / "u.creds"
    creds.write_text(User("a.b.c", seed(kp)).creds())
    assert options(f"auth:\n  user_credentials_file: {creds}")["user_credentials"] == str(creds)


def test_nkey_file_may_be_decorated(tmp_path: Path) -> None:
    """A seed on a line of its own among other lines (a ``.creds``-style file), as Go's reader takes it."""
    kp = keypair(nkeys.PREFIX_BYTE_USER)
    (tmp_path / "u.nk").write_text(
        f"-----BEGIN USER NKEY SEED-----\n{seed(kp)}\n------END USER NKEY SEED------\n"
    )
    assert options(f"auth:\n  nkey_file: {tmp_path / 'u.nk'}")["nkeys_seed_str"] == seed(kp)


@pytest.mark.parametrize(
    ("auth", "path", "message"),
    [
        ("user_credentials_file: {dir}/seed.nk", "user_credentials_file", "not a NATS credentials file"),
        ("nkey_file: {dir}/empty.nk", "nkey_file", "no NKey seed in"),
        ("nkey: SUNOTAVALIDSEED", "nkey", "not a valid NKey seed or private key"),
        ("nkey: PNOTAVALIDKEY", "nkey", "not a valid NKey seed or private key"),
        ("user_jwt: a.b.c\n  user_nkey_seed: SUBROKEN", "user_nkey_seed", "not a valid NKey seed or private key"),
    ],
    ids=["creds-without-jwt", "nkey-file-without-seed", "bad-seed", "bad-private-key", "bad-user-seed"],
)  # fmt: skip
def test_unusable_credentials_are_found_at_start(tmp_path: Path, auth: str, path: str, message: str) -> None:
    """Checked once when the options are built (nats-py would fail each attempt, or hang reading a creds
    file without a JWT), reported as a config problem naming the field. (That the files exist, are
    regular and small is checked by the config itself: tests/unit/test_localfiles.py.)"""
    (tmp_path / "seed.nk").write_text(seed(keypair(nkeys.PREFIX_BYTE_USER)))
    (tmp_path / "empty.nk").write_text("nothing here\n")
    opts = options("auth:\n  " + auth.format(dir=tmp_path))
    assert isinstance(opts.problem, ConfigError)
    [problem] = opts.problem.problems
    assert problem.path == f"output.nats_jetstream.auth.{path}"
    assert message in problem.message


def test_nkey_private_key_form_becomes_the_user_seed() -> None:
    kp = keypair(nkeys.PREFIX_BYTE_USER)
    private = kp.private_key.decode()
    assert private.startswith("P")
    got = options(f"auth:\n  nkey: {private}")["nkeys_seed_str"]
    assert got == seed(kp)
    assert nkeys.from_seed(bytearray(got.encode())).public_key.decode() == public(kp)


def test_user_jwt_and_seed_sign_the_server_nonce() -> None:
    kp = keypair(nkeys.PREFIX_BYTE_USER)
    opts = options(f"auth:\n  user_jwt: ' header.claims.sig '\n  user_nkey_seed: {seed(kp)}")
    assert opts["user_jwt_cb"]() == bytearray(b"header.claims.sig")
    signature = base64.b64decode(opts["signature_cb"]("nonce-123"))
    assert nkeys.from_seed(bytearray(seed(kp).encode())).verify(b"nonce-123", signature)


METHODS = {
    "nkey_file": "nkey_file: ./seed.nk",
    "nkey": "nkey: SUAEXAMPLESEED",
    "user_credentials_file": "user_credentials_file: ./user.creds",
    "user_jwt/user_nkey_seed": "user_jwt: a.b.c\n  user_nkey_seed: SUAEXAMPLESEED",
    "user/password": "user: u\n  password: p",
    "token": "token: t",
}
PAIRS = [(a, b) for i, a in enumerate(METHODS) for b in list(METHODS)[i + 1 :]]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_auth_methods_are_a_lint_error(first: str, second: str) -> None:
    found = problems(config(f"auth:\n  {METHODS[first]}\n  {METHODS[second]}"))
    assert found == [
        ("output.nats_jetstream.auth", f"configure one authentication method, not 2: {first}, {second}")
    ]


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("user: u", "user and password must be given together"),
        ("password: p", "user and password must be given together"),
        ("user_jwt: a.b.c", "user_jwt and user_nkey_seed must be given together"),
        ("user_nkey_seed: SUAX", "user_jwt and user_nkey_seed must be given together"),
        (
            "nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
            "a value starting with U is a public key",
        ),
        ("user_jwt: a.b.c\n  user_nkey_seed: not-a-seed", "user_nkey_seed must be an NKey seed (S...)"),
    ],
    ids=["user-alone", "password-alone", "jwt-alone", "seed-alone", "nkey-public-key", "bad-seed"],
)
def test_incomplete_auth_is_a_lint_error(auth: str, message: str) -> None:
    found = problems(config(f"auth:\n  {auth}"))
    assert [p for p, _ in found] == ["output.nats_jetstream.auth"]
    assert message in found[0][1]


def test_url_credentials_and_an_auth_method_are_a_lint_error() -> None:
    found = problems(config("auth:\n  token: t", urls="[nats://u:p@a:4222]"))
    assert found == [("output.nats_jetstream", "urls carry credentials (user:password@) and auth sets token: "
                                               "configure one authentication method")]  # fmt: skip


# ----------------------------------------------------------------------------------- TLS


def tls(**fields: Any) -> TLS:
    return TLS(enabled=True, **fields)


def test_tls_not_enabled_builds_no_context() -> None:
    assert ssl_context(TLS(root_cas="ignored", skip_cert_verify=True)) is None


def test_tls_enabled_verifies_the_server_by_default() -> None:
    ctx = ssl_context(tls())
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


@pytest.mark.parametrize("form", ["root_cas", "root_cas_file"])
def test_root_cas_replace_the_system_roots(ca: trustme.CA, tmp_path: Path, form: str) -> None:
    pem = ca.cert_pem.bytes().decode()
    value = pem
    if form == "root_cas_file":
        value = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(value)
    ctx = ssl_context(tls(**{form: value}))
    assert ctx is not None
    # only the given CA: the system's roots are not loaded (Go's RootCAs)
    assert ctx.get_ca_certs(binary_form=True) == [ssl.PEM_cert_to_DER_cert(pem)]


def test_skip_cert_verify() -> None:
    ctx = ssl_context(tls(skip_cert_verify=True))
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname


@pytest.mark.parametrize(("enabled", "refused"), [(False, True), (True, False)])
def test_enable_renegotiation(enabled: bool, refused: bool) -> None:
    """false (default, Go's RenegotiateNever) → OP_NO_RENEGOTIATION; true → OpenSSL accepts the server's
    secure renegotiation requests (Go's RenegotiateFreelyAsClient)."""
    ctx = ssl_context(tls(enable_renegotiation=enabled))
    assert ctx is not None
    assert bool(ctx.options & ssl.OP_NO_RENEGOTIATION) is refused


@pytest.mark.parametrize("form", ["inline", "files", "pkcs1-password", "pkcs8-password"])
def test_client_certificate_forms_load(ca: trustme.CA, tmp_path: Path, form: str) -> None:
    pem = leaf(ca, "client", rsa=True)
    key, password = pem.key, ""
    if form.endswith("-password"):
        key, password = encrypted_key(pem.key, "pw", form.split("-")[0]), "pw"
    if form == "inline" or form == "pkcs8-password":
        cert = ClientCert(cert=pem.cert, key=key, password=password)
    else:
        (tmp_path / "c.pem").write_text(pem.cert)
        (tmp_path / "k.pem").write_text(key)
        cert = ClientCert(
            cert_file=str(tmp_path / "c.pem"), key_file=str(tmp_path / "k.pem"), password=password
        )
    assert ssl_context(tls(client_certs=(cert,))) is not None


@pytest.mark.parametrize(
    ("password", "key_kind", "message"),
    [
        ("wrong", "pkcs8", "cannot decrypt the private key with this password"),
        ("", "pkcs1", "the private key is encrypted: set password"),
        ("", "mismatched", "the certificate and key do not load or do not match"),
    ],
)
def test_client_key_that_does_not_load_names_the_field(
    ca: trustme.CA, password: str, key_kind: str, message: str
) -> None:
    """A ConfigError naming the field, never an OpenSSL password prompt on the terminal."""
    pem = leaf(ca, "client", rsa=True)
    key = (
        leaf(ca, "other", rsa=True).key
        if key_kind == "mismatched"
        else encrypted_key(pem.key, "pw", key_kind)
    )
    with pytest.raises(ConfigError) as info:
        ssl_context(tls(client_certs=(ClientCert(cert=pem.cert, key=key, password=password),)))
    [problem] = info.value.problems
    assert problem.path == "output.nats_jetstream.tls.client_certs[0]"
    assert message in problem.message


def test_pbe_md5_des_keys_are_refused(ca: trustme.CA) -> None:
    """The obsolete pbeWithMD5AndDES-CBC (OID 1.2.840.113549.1.5.3) is refused with its name."""
    pem = leaf(ca, "client", rsa=True)
    der = (
        bytes.fromhex("3020301a06092a864886f70d010503300d0408") + b"\x00" * 8 + b"\x02\x01\x01" + b"\x04\x00"
    )
    key = (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + base64.b64encode(der).decode()
        + "\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    with pytest.raises(ConfigError, match="pbeWithMD5AndDES-CBC, which is not supported"):
        ssl_context(tls(client_certs=(ClientCert(cert=pem.cert, key=key, password="pw"),)))


def test_missing_files_name_the_field(tmp_path: Path) -> None:
    """The config checks the files when it loads; one removed before the connection is still named."""
    with pytest.raises(ConfigError) as info:
        ssl_context(tls(root_cas_file=str(tmp_path / "nope.pem")), where="input.kafka_franz.tls")
    assert str(info.value.problems[0]) == (
        f"input.kafka_franz.tls.root_cas_file: cannot read '{tmp_path / 'nope.pem'}': No such file or directory"
    )
    with pytest.raises(ConfigError, match=r"client_certs\[0\]\.cert_file: cannot read"):
        ssl_context(tls(client_certs=(ClientCert(cert_file=str(tmp_path / "c.pem"), key_file="k.pem"),)))
    with pytest.raises(ConfigError, match=r"auth\.nkey_file: cannot read .*: No such file or directory"):
        auth_options(NatsAuth(nkey_file=str(tmp_path / "u.nk")))
    with pytest.raises(ConfigError, match=r"auth\.user_credentials_file: cannot read .*: No such file"):
        auth_options(NatsAuth(user_credentials_file=str(tmp_path / "u.creds")))
    (tmp_path / "c.pem").write_text("a certificate")
    with pytest.raises(ConfigError, match=r"client_certs\[0\]\.key_file: cannot read"):
        ssl_context(
            tls(
                client_certs=(
                    ClientCert(cert_file=str(tmp_path / "c.pem"), key_file=str(tmp_path / "k.pem")),
                )
            )
        )
    with pytest.raises(ConfigError, match=r"tls\.root_cas: cannot load root certificates"):
        ssl_context(tls(root_cas="not a certificate"))


def test_unloadable_tls_material_is_returned_not_raised(tmp_path: Path) -> None:
    """connect_options runs before the sink exists: the problem travels with the options and the sink
    raises it at its first connection attempt (exit code 2, like any config error)."""
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    opts = options(f"tls:\n  enabled: true\n  root_cas_file: {tmp_path / 'garbage.pem'}")
    assert isinstance(opts.problem, ConfigError)
    assert "tls" not in opts
    with pytest.raises(ConfigError, match=r"output\.nats_jetstream\.tls\.root_cas_file: cannot load"):
        opts.checked()
    assert options().checked()["servers"] == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(
    ("tls_yaml", "message"),
    [
        (
            "client_certs:\n    - {cert: a, key: b}\n    - {cert: c, key: d}",
            "presents one client certificate",
        ),
        ("client_certs:\n    - {cert: a}", "cert and key must be given together"),
        ("client_certs:\n    - {}", "give cert and key, or cert_file and key_file"),
    ],
)
def test_client_cert_lint_errors(tls_yaml: str, message: str) -> None:
    found = problems(config(f"tls:\n  enabled: true\n  {tls_yaml}"))
    assert found
    assert found[0][0].startswith("output.nats_jetstream.tls")
    assert message in found[0][1]


# ----------------------------------------------------------------------------------- Kafka SASL lint


@pytest.mark.parametrize(
    ("sasl", "message"),
    [
        ("[{mechanism: AWS_MSK_IAM}]", "AWS_MSK_IAM is not implemented"),
        ("[{mechanism: SCRAM-SHA-256, password: p}]", "SCRAM-SHA-256 needs username and password"),
        ("[{mechanism: OAUTHBEARER}]", "OAUTHBEARER needs token"),
        ("[{mechanism: PLAIN, username: u, password: p}, {mechanism: PLAIN, username: v, password: q}]",
         "only one sasl mechanism"),
    ],
    ids=["aws-msk-iam", "scram-without-user", "oauth-without-token", "two-mechanisms"],
)  # fmt: skip
def test_franz_sasl_lint_errors(sasl: str, message: str) -> None:
    found = problems(config(inp=f"sasl: {sasl}"))
    assert found
    assert found[0][0].startswith("input.kafka_franz")
    assert message in found[0][1]


def test_sarama_sasl_lint_errors() -> None:
    legacy = "input:\n  kafka:\n    addresses: [k:9092]\n    topics: [t]\n    consumer_group: g\n    sasl:\n{}output:\n  nats_jetstream:\n    urls: [n]\n    subject: s\n"
    found = problems(legacy.format("      mechanism: OAUTHBEARER\n      token_cache: c\n"))
    assert found == [
        (
            "input.kafka.sasl",
            "token_cache and token_key need cache resources, which this bridge does not implement",
        )
    ]
    found = problems(legacy.format("      mechanism: PLAIN\n      password: p\n"))
    assert found == [("input.kafka.sasl", "mechanism PLAIN needs user and password")]
