"""Who the page lets in, without a library: sign-in behind a reverse proxy, the sign-in
rate limit, anonymous sessions, and what strangers may see of labels.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_web_auth import FakeClock, _cfg

from daemon.web.app import create_app
from daemon.web.auth import PasswordError, SignInLimiter, TooManyAttempts, set_password

LOCAL = ("127.0.0.1", 50000)
"""A browser on this machine (the test client's own default is no address)."""
PASSWORD = "a long enough password"
PROXIED = [{"x-forwarded-for": "203.0.113.9"}, {"x-real-ip": "203.0.113.9"},
           {"forwarded": "for=203.0.113.9;proto=https"}, {"x-forwarded-proto": "https"},
           {"X-Forwarded-Host": "photos.example"}, {"via": "1.1 nas"}]


def _client(cfg, client=LOCAL) -> TestClient:
    return TestClient(create_app(cfg), base_url="http://127.0.0.1", client=client)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


# -- the sign-in rate limit ------------------------------------------------------------


def test_a_guesser_spread_over_many_addresses_only_delays_the_owner():
    clock = FakeClock()
    limiter = SignInLimiter(clock=clock)
    for i in range(10):
        for _ in range(5):
            limiter.check(f"10.0.0.{i}")
            limiter.failed(f"10.0.0.{i}")
    with pytest.raises(TooManyAttempts) as err:
        limiter.check("10.0.0.200")  # the owner, right after a guess
    assert 0 < err.value.retry_after <= 5
    clock.now += 5
    limiter.check("10.0.0.200")  # a few seconds later the owner may try
    with pytest.raises(TooManyAttempts):
        limiter.check("10.0.0.3")  # while a guesser's own address still waits
    clock.now += 301
    limiter.check("10.0.0.3")


def test_each_guess_past_the_overall_cap_pushes_the_pause_on():
    clock = FakeClock()
    limiter = SignInLimiter(per_client=100, overall=10, window=60, backoff=3, clock=clock)
    for _ in range(10):
        limiter.failed("10.0.0.1")
    clock.now += 2
    with pytest.raises(TooManyAttempts):
        limiter.check("10.0.0.2")
    clock.now += 1
    limiter.check("10.0.0.2")
    limiter.failed("10.0.0.2")
    with pytest.raises(TooManyAttempts):
        limiter.check("10.0.0.3")
    clock.now += 61
    limiter.check("10.0.0.3")


def test_one_ipv6_network_counts_as_one_address():
    limiter = SignInLimiter(clock=FakeClock())
    for i in range(5):
        limiter.failed(f"2001:db8:1:2::{i + 1}")
    with pytest.raises(TooManyAttempts):
        limiter.check("2001:db8:1:2:ffff::9")
    limiter.check("2001:db8:1:3::1")
    limiter.failed("::ffff:10.1.1.1")
    limiter.failed("10.1.1.1")
    for _ in range(3):
        limiter.failed("10.1.1.1")
    with pytest.raises(TooManyAttempts):
        limiter.check("::ffff:10.1.1.1")


def test_sign_in_failures_behind_a_proxy_count_for_the_client_it_names(tmp_path: Path):
    cfg = _cfg(tmp_path)
    set_password(cfg.state_dir, PASSWORD)
    client = _client(cfg)
    guesser = {"x-forwarded-for": "198.51.100.7"}
    owner = {"x-forwarded-for": "198.51.100.7, 192.0.2.20"}  # the proxy's hop is last
    csrf = _csrf(client.get("/signin", headers=guesser).text)
    for _ in range(5):
        r = client.post("/signin", data={"csrf": csrf, "password": "guess"}, headers=guesser)
        assert r.status_code == 403
    r = client.post("/signin", data={"csrf": csrf, "password": PASSWORD}, headers=guesser)
    assert r.status_code == 429
    r = client.post("/signin", data={"csrf": csrf, "password": PASSWORD}, headers=owner,
                    follow_redirects=False)
    assert r.status_code == 303


# -- behind a reverse proxy ---------------------------------------------------------------


@pytest.mark.parametrize("headers", PROXIED)
def test_a_proxied_request_needs_sign_in_on_a_loopback_bind(tmp_path: Path, headers):
    cfg = _cfg(tmp_path)
    set_password(cfg.state_dir, PASSWORD)
    client = _client(cfg)
    r = client.get("/", headers=headers, follow_redirects=False)
    assert (r.status_code, r.headers.get("location")) == (303, "/signin")
    for url in ("/status", "/person/1", "/face/1.jpg", "/photo/1", "/person/1/montage.jpg"):
        assert client.get(url, headers=headers, follow_redirects=False).status_code in (303, 403)
    csrf = _csrf(client.get("/signin", headers=headers).text)
    r = client.post("/hide", data={"csrf": csrf, "person": "1", "hidden": "1", "digest": "0"},
                    headers=headers)
    assert r.status_code == 403 and not (tmp_path / "labels.toml").exists()
    # signed in through the proxy, the page opens (503: no library in this test)
    r = client.post("/signin", data={"csrf": csrf, "password": PASSWORD}, headers=headers,
                    follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", headers=headers, follow_redirects=False).status_code == 503


def test_a_proxy_may_pass_on_the_sites_host_name_but_a_stranger_may_not(tmp_path: Path):
    cfg = _cfg(tmp_path)
    set_password(cfg.state_dir, PASSWORD)
    client = _client(cfg)
    site = {"host": "photos.example", "x-forwarded-for": "203.0.113.9"}
    r = client.get("/", headers=site, follow_redirects=False)
    assert (r.status_code, r.headers.get("location")) == (303, "/signin")
    assert client.get("/", headers={"host": "photos.example"}).status_code == 421


def test_a_client_from_another_machine_needs_sign_in_on_a_loopback_bind(tmp_path: Path):
    cfg = _cfg(tmp_path)
    set_password(cfg.state_dir, PASSWORD)
    for peer in (("192.168.1.7", 4000), ("::ffff:192.168.1.7", 4000), ("testclient", 1)):
        r = _client(cfg, peer).get("/", follow_redirects=False)
        assert (r.status_code, r.headers.get("location")) == (303, "/signin"), peer
    # this machine itself, with no forwarding header, needs none (503: no library here)
    assert _client(cfg).get("/", follow_redirects=False).status_code == 503


def test_a_proxied_request_without_a_password_set_is_told_how_to_set_one(tmp_path: Path):
    client = _client(_cfg(tmp_path))
    proxied = PROXIED[0]
    r = client.get("/", headers=proxied, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/signin", headers=proxied).text
    assert "facecluster web passwd" in page
    r = client.post("/signin", data={"csrf": _csrf(page), "password": "anything at all"},
                    headers=proxied)
    assert r.status_code == 403 and "facecluster web passwd" in r.text


def test_behind_https_means_a_proxy_so_a_password_is_needed(tmp_path: Path):
    cfg = _cfg(tmp_path, behind_https=True)
    with pytest.raises(PasswordError, match="behind_https"):
        create_app(cfg)
    set_password(cfg.state_dir, PASSWORD)
    r = _client(cfg).get("/", follow_redirects=False)
    assert (r.status_code, r.headers.get("location")) == (303, "/signin")


# -- sessions -------------------------------------------------------------------------------


def test_anonymous_page_views_never_push_out_an_open_pages_token(tmp_path: Path):
    client = _client(_cfg(tmp_path))
    csrf = _csrf(client.get("/signin").text)
    app = client.app
    for _ in range(1001):  # browsers without a cookie: each view used to start a session
        assert TestClient(app, base_url="http://127.0.0.1", client=LOCAL).get(
            "/signin").status_code == 200
    r = client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303  # the open page's form still works
    stranger = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    stranger.get("/signin")
    r = stranger.post("/signout", data={"csrf": csrf})  # another browser's token
    assert r.status_code == 403


# -- what strangers see ---------------------------------------------------------------------


def test_labels_errors_are_shown_only_to_signed_in_users(tmp_path: Path):
    cfg = _cfg(tmp_path, listen="0.0.0.0")
    set_password(cfg.state_dir, PASSWORD)
    (tmp_path / "labels.toml").write_text('[people]\nperson-0001 = "Secret Aunt\n')
    client = _client(cfg)
    html = {"accept": "text/html"}
    for url in ("/signin", "/signin/nothing", "/signinx", "/static/nothing.css",
                "/static/%2e%2e/x"):
        r = client.get(url, headers=html)
        assert r.status_code in (200, 404), url
        assert "labels.toml has a problem" not in r.text, url
        assert str(tmp_path) not in r.text and "Secret Aunt" not in r.text, url
    r = client.post("/signin", data={"csrf": _csrf(client.get("/signin").text),
                                     "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/signin").text
    assert "labels.toml has a problem" in page and str(tmp_path) in page


def test_addresses_that_stopped_guessing_are_forgotten():
    from daemon.web import auth

    clock = FakeClock()
    limiter = SignInLimiter(per_client=5, overall=10**9, clock=clock)
    for i in range(auth.MAX_TRACKED + 1):
        limiter.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    clock.now += 301
    limiter.failed("192.0.2.1")
    assert len(limiter._failures) == 2  # that one and the overall count
