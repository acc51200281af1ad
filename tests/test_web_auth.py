"""The web page's sign-in pieces without a library: password hash, rate limit, sessions,
config checks and the request guard (no store needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from daemon.config import ConfigError, from_dict
from daemon.web.app import COOKIE, create_app
from daemon.web.auth import (
    PASSWORD_FILE,
    PasswordError,
    Sessions,
    SignInLimiter,
    TooManyAttempts,
    hash_password,
    is_loopback,
    read_password_hash,
    set_password,
    verify_password,
)

LOCAL = ("127.0.0.1", 50000)
"""A browser on this machine (the test client's own default is no address)."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cfg(tmp_path: Path, **web):
    return from_dict({"watch": [str(tmp_path / "photos")], "state_dir": str(tmp_path / "state"),
                      "labels_file": str(tmp_path / "labels.toml"), "web": web}, tmp_path)


def test_password_hash_verifies_only_the_right_password():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert not verify_password("correct horse", "scrypt$1$2$3$zz$zz")  # garbage: no crash
    assert hash_password("correct horse") != stored  # salted


def test_set_password_keeps_only_a_private_hash(tmp_path: Path):
    with pytest.raises(PasswordError):
        set_password(tmp_path, "short")
    assert read_password_hash(tmp_path) is None
    path = set_password(tmp_path, "a long enough password")
    assert path == tmp_path / PASSWORD_FILE
    assert path.stat().st_mode & 0o077 == 0
    assert "a long enough password" not in path.read_text()
    assert verify_password("a long enough password", read_password_hash(tmp_path))


def test_limiter_refuses_after_five_failures_until_the_window_passes():
    clock = FakeClock()
    limiter = SignInLimiter(per_client=5, overall=50, window=300, clock=clock)
    for _ in range(5):
        limiter.check("10.0.0.2")
        limiter.failed("10.0.0.2")
    with pytest.raises(TooManyAttempts) as err:
        limiter.check("10.0.0.2")
    assert 0 < err.value.retry_after <= 300
    limiter.check("10.0.0.3")  # another client is not blocked by this one
    clock.now += 301
    limiter.check("10.0.0.2")


def test_limiter_overall_cap_stops_a_spread_out_guesser():
    clock = FakeClock()
    limiter = SignInLimiter(per_client=5, overall=10, window=60, clock=clock)
    for i in range(10):
        limiter.failed(f"10.0.0.{i}")
    with pytest.raises(TooManyAttempts):
        limiter.check("10.0.1.1")
    clock.now += 61
    limiter.check("10.0.1.1")


def test_sessions_expire_and_anonymous_ones_are_not_kept():
    clock = FakeClock()
    sessions = Sessions(ttl=100, limit=3, clock=clock)
    signed = sessions.new(signed_in=True)
    anon = [sessions.new() for _ in range(2000)]  # none of them is stored
    assert sessions.get(signed.id) is signed
    again = sessions.get(anon[0].id)
    assert again is not None and again.csrf == anon[0].csrf and not again.signed_in
    assert sessions.get(anon[1].id).csrf != anon[0].csrf
    assert sessions.get("forged id") is None
    more = [sessions.new(signed_in=True) for _ in range(3)]  # over the limit: oldest goes
    assert not sessions.get(signed.id).signed_in and sessions.get(more[-1].id) is more[-1]
    clock.now += 101
    assert not sessions.get(more[-1].id).signed_in


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_web_config_is_validated(tmp_path: Path):
    cfg = _cfg(tmp_path)
    assert (cfg.web.enabled, cfg.web.listen, cfg.web.port) == (False, "127.0.0.1", 8765)
    with pytest.raises(ConfigError, match="web.listen"):
        _cfg(tmp_path, listen="nas.local")
    with pytest.raises(ConfigError, match="web.port"):
        _cfg(tmp_path, port=0)
    with pytest.raises(ConfigError, match="web.port"):
        _cfg(tmp_path, port=70000)
    with pytest.raises(ConfigError, match="unknown key"):
        _cfg(tmp_path, password="x")


def test_lan_bind_without_password_refuses_to_start(tmp_path: Path):
    with pytest.raises(PasswordError, match="web passwd"):
        create_app(_cfg(tmp_path, listen="0.0.0.0"))


def test_password_file_is_the_password_and_must_be_usable(tmp_path: Path):
    secret = tmp_path / "secret"
    cfg = _cfg(tmp_path, listen="0.0.0.0", password_file="secret")
    assert cfg.web.password_file == secret  # relative to the config file's folder
    with pytest.raises(PasswordError, match="password_file"):
        create_app(cfg)  # missing
    secret.write_text("short\n")
    with pytest.raises(PasswordError, match="shorter than 8"):
        create_app(cfg)
    secret.write_text("a container secret\n")  # secrets usually end in a newline
    app = create_app(cfg)

    def sign_in(password: str) -> int:
        client = TestClient(app, base_url="http://127.0.0.1")
        csrf = client.get("/signin").text.split('name="csrf" value="')[1].split('"')[0]
        r = client.post("/signin", data={"csrf": csrf, "password": password},
                        follow_redirects=False)
        return r.status_code

    assert sign_in("a container secre") == 403
    assert not (tmp_path / "state" / PASSWORD_FILE).exists()  # nothing stored or hashed
    assert sign_in("a container secret") == 303
    secret.write_text("a rotated secret\n")  # read at each sign-in: no restart needed
    assert sign_in("a container secret") == 403
    assert sign_in("a rotated secret") == 303


def test_no_store_is_a_clear_page_and_none_is_created(tmp_path: Path):
    cfg = _cfg(tmp_path)
    client = TestClient(create_app(cfg), base_url="http://127.0.0.1", client=LOCAL)
    r = client.get("/", headers={"accept": "text/html"})
    assert r.status_code == 503
    assert "facecluster scan" in r.text
    assert not (tmp_path / "state").exists()


def test_foreign_host_header_is_refused_on_a_loopback_bind(tmp_path: Path):
    client = TestClient(create_app(_cfg(tmp_path)), base_url="http://127.0.0.1", client=LOCAL)
    r = client.get("/static/style.css", headers={"host": "evil.example:8765"})
    assert r.status_code == 421
    assert client.get("/static/style.css", headers={"host": "localhost:8765"}).status_code == 200


def test_security_headers_and_cookie_flags(tmp_path: Path):
    cfg = _cfg(tmp_path, behind_https=True)
    set_password(cfg.state_dir, "a long enough password")  # a proxy in front: sign-in
    client = TestClient(create_app(cfg), base_url="http://127.0.0.1", client=LOCAL)
    r = client.get("/signin")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(COOKIE) and "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" in cookie
    plain = TestClient(create_app(_cfg(tmp_path)), base_url="http://127.0.0.1", client=LOCAL)
    assert "secure" not in plain.get("/signin").headers["set-cookie"].lower()


def test_no_directory_listing(tmp_path: Path):
    client = TestClient(create_app(_cfg(tmp_path)), base_url="http://127.0.0.1", client=LOCAL)
    for url in ("/static/", "/static", "/static/%2e%2e/app.py", "/static/%2e%2e/%2e%2e/cli.py",
                "/static/../web/app.py", "/static//etc/passwd"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "import" not in r.text and "root:" not in r.text


def test_web_passwd_command_asks_twice(tmp_path: Path, capsys):
    from daemon.web.command import WebCommandError, passwd

    cfg = _cfg(tmp_path)
    answers = iter(["one long password", "another password"])
    with pytest.raises(WebCommandError, match="differ"):
        passwd(cfg, ask=lambda _: next(answers))
    assert read_password_hash(cfg.state_dir) is None
    answers = iter(["one long password", "one long password"])
    assert passwd(cfg, ask=lambda _: next(answers)) == 0
    assert verify_password("one long password", read_password_hash(cfg.state_dir))
    assert "one long password" not in capsys.readouterr().out


def test_page_thread_on_a_taken_port_only_logs(tmp_path: Path):
    import socket
    from dataclasses import replace

    from daemon.web.server import WebThread

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = _cfg(tmp_path)
        cfg = replace(cfg, web=replace(cfg.web, enabled=True, port=taken.getsockname()[1]))
        web = WebThread(cfg)
        web.start()  # must not raise: the albums matter more than the page
        web.stop()
    lan = replace(cfg, web=replace(cfg.web, listen="0.0.0.0"))
    web = WebThread(lan)  # no password: refused with a log line, nothing served
    web.start()
    assert web._thread is None
    web.stop()


def test_the_page_opens_the_store_read_only(tmp_path: Path):
    from daemon.store import Store, StoreError

    Store.open(tmp_path).close()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with Store.open_readonly(tmp_path) as store:
        assert store.counts().faces == 0
        with pytest.raises(StoreError):
            store.set_meta("x", "y")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()
            if p.name in before} == before


def test_may_be_the_same_lags_a_changing_store_by_at_most_five_minutes(tmp_path: Path):
    import numpy as np

    from daemon.indexer.types import Face, IndexedPhoto
    from daemon.store import Store
    from daemon.web.library import CENTRES_MAX_AGE, Library

    cfg = _cfg(tmp_path)
    rng = np.random.default_rng(1)
    with Store.open(cfg.state_dir) as store:
        faces = []
        base = rng.standard_normal(8).astype(np.float32)
        for i in range(6):  # three look-alike people: every centre within 0.55 of the others
            v = base + 0.05 * rng.standard_normal(8).astype(np.float32)
            path = tmp_path / f"p{i}.jpg"
            face = Face((0.0, 0.0, 10.0, 10.0), (), 0.9, v / np.linalg.norm(v))
            faces += store.save_indexed(path, 1, 1, None, IndexedPhoto(path, 9, 9, "e", (face,)))
        people = [store.new_person_id() for _ in range(3)]
        store.set_persons({f: people[k // 2] for k, f in enumerate(faces)})
        clock = FakeClock()
        library = Library(cfg, clock=clock)
        first = library.similar(people[0])
        assert sorted(p for p, _ in first) == sorted(people[1:])
        store.set_persons({faces[0]: people[2], faces[1]: people[2]})  # people[0] is gone
        clock.now += CENTRES_MAX_AGE - 1
        assert library.similar(people[0]) == first  # kept: younger than the limit
        clock.now += 2
        assert library.similar(people[0]) == []  # rebuilt: the store changed meanwhile
    library.close()
