import pytest

from agent.control_url import InvalidControlUrl, parse_control_url

# accessSecureURL of real VoxEngine sessions (public repositories quoting their call logs).
REAL_US = (
    "https://www-us-35-230.voximplant.com:12093/request/"
    "5014DA08C37601ED.1771267099.44321981_109.61.92.230/FD8FE1FAD3DB5EFA"
)
REAL_RU = "https://www-ru-52-18.voximplant.com:12093/request/8D3AC1F2B4E05A77.1771267100.51_185.164.148.18/0A1B2C3D4E5F6071"
GOOD = "https://203.0.113.7:12092/request/abc123/s3cr3t-token"


@pytest.mark.parametrize("url", [REAL_US, REAL_RU])
def test_accepts_the_urls_real_voxengine_sessions_send(url: str) -> None:
    target = parse_control_url(url)
    assert target.host.endswith(".voximplant.com")
    assert target.origin == url.split("/request/")[0]
    assert target.url == url
    assert "FD8FE1FAD3DB5EFA" not in repr(target) and "request" not in str(target)


def test_accepts_a_public_ip_literal_and_hides_its_path() -> None:
    target = parse_control_url("https://8.8.4.4:12092/request/abc123/s3cr3t-token")
    assert target.origin == "https://8.8.4.4:12092"
    assert "s3cr3t" not in repr(target) and "s3cr3t" not in str(target)
    assert "abc123" not in target.redacted
    assert len(target.fingerprint) == 12


def test_the_request_goes_to_the_checked_host_while_the_fingerprint_is_of_the_url_as_sent() -> None:
    sent = "https://WWW-US-35-230.Voximplant.com.:12093/request/abc/def"
    target = parse_control_url(sent)
    assert target.url == "https://www-us-35-230.voximplant.com:12093/request/abc/def"
    assert (
        target.fingerprint == parse_control_url(sent).fingerprint != parse_control_url(target.url).fingerprint
    )


def test_the_allow_list_is_of_suffixes_and_can_be_extended() -> None:
    assert parse_control_url("https://voximplant.com/request/a/b").host == "voximplant.com"
    for name in ("voximplant.com.evil.example", "evilvoximplant.com", "voximplant.co"):
        with pytest.raises(InvalidControlUrl) as err:
            parse_control_url(f"https://{name}/request/a/b")
        assert err.value.reason == "host_name_not_allowed"
    allowed = ("voximplant.com", "media.example.org")
    assert parse_control_url("https://a.media.example.org/request/a/b", allowed_hosts=allowed).host
    with pytest.raises(InvalidControlUrl):
        parse_control_url("https://example.org/request/a/b", allowed_hosts=allowed)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        (42, "not_a_string"),
        ({"url": GOOD}, "not_a_string"),
        ("http://8.8.4.4/request/a/b", "scheme_not_allowed"),
        ("http://www-us-35-230.voximplant.com:12092/request/a/b", "scheme_not_allowed"),  # accessURL
        ("ftp://8.8.4.4/request/a/b", "scheme_not_allowed"),
        ("https://user:pw@8.8.4.4/request/a/b", "userinfo_not_allowed"),
        ("https://8.8.4.4", "missing_path"),
        ("https://8.8.4.4/", "missing_path"),
        ("https:///request/a/b", "missing_host"),
        ("https://127.0.0.1:12092/request/a/b", "local_address_not_allowed"),
        ("https://10.1.2.3/request/a/b", "local_address_not_allowed"),
        ("https://192.168.0.10/request/a/b", "local_address_not_allowed"),
        ("https://172.16.5.4/request/a/b", "local_address_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "local_address_not_allowed"),
        ("https://0.0.0.0/request/a/b", "local_address_not_allowed"),
        ("https://[::1]/request/a/b", "local_address_not_allowed"),
        ("https://[fe80::1]/request/a/b", "local_address_not_allowed"),
        ("https://[fd00::1]/request/a/b", "local_address_not_allowed"),
        ("https://[::ffff:127.0.0.1]/request/a/b", "local_address_not_allowed"),
        ("https://localhost/request/a/b", "host_name_not_allowed"),
        ("https://metadata.google.internal/computeMetadata/v1", "host_name_not_allowed"),
        ("https://example.com/request/a/b", "host_name_not_allowed"),
        ("https://[::127.0.0.1]/request/a/b", "local_address_not_allowed"),  # IPv4-compatible
        ("https://[64:ff9b::169.254.169.254]/x/y", "local_address_not_allowed"),  # NAT64
        ("https://[2002:7f00:1::]/request/a/b", "local_address_not_allowed"),  # 6to4 of 127.0.0.1
        ("https://bücher.example/request/a/b", "malformed"),
        ("https://8.8.4.4:99999/request/a/b", "malformed"),
        ("https://8.8.4.4/request/a b", "malformed"),
        ("https://8.8.4.4/" + "a" * 3000, "too_long"),
        ("https://a_b.voximplant.com/request/a/b", "malformed"),
        ("https://-a.voximplant.com/request/a/b", "malformed"),
        ("https://8.8.4.4/latest/meta-data", "bad_path"),
        ("https://8.8.4.4/request/a", "bad_path"),
        ("https://8.8.4.4/request/a/b/c", "bad_path"),
        ("https://8.8.4.4/request/a/b?redirect=1", "bad_path"),
        ("https://8.8.4.4/request/../b", "bad_path"),
        ("https://8.8.4.4/request/a%2Fb/c", "bad_path"),
    ],
)
def test_refuses_unsafe_or_malformed_urls(raw: object, reason: str) -> None:
    with pytest.raises(InvalidControlUrl) as err:
        parse_control_url(raw)
    assert err.value.reason == reason


def test_the_local_lab_setting_admits_a_local_address_and_nothing_else() -> None:
    target = parse_control_url("https://127.0.0.1:8123/request/s1/tok", allow_local=True)
    assert target.origin == "https://127.0.0.1:8123"
    for raw, reason in [
        ("http://127.0.0.1:8123/request/s1/tok", "scheme_not_allowed"),
        ("https://localhost:8123/request/s1/tok", "host_name_not_allowed"),
        ("https://u@127.0.0.1/request/s1/tok", "userinfo_not_allowed"),
        ("https://127.0.0.1:8123/other", "bad_path"),
    ]:
        with pytest.raises(InvalidControlUrl) as err:
            parse_control_url(raw, allow_local=True)
        assert err.value.reason == reason
