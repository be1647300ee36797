import pytest

from agent.control_url import InvalidControlUrl, parse_control_url

GOOD = "https://203.0.113.7:12092/request/abc123/s3cr3t-token"


def test_accepts_a_voxengine_shaped_url_and_hides_its_path() -> None:
    target = parse_control_url("https://8.8.4.4:12092/request/abc123/s3cr3t-token")
    assert target.origin == "https://8.8.4.4:12092"
    assert "s3cr3t" not in repr(target) and "s3cr3t" not in str(target)
    assert "abc123" not in target.redacted
    assert len(target.fingerprint) == 12


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        (42, "not_a_string"),
        ({"url": GOOD}, "not_a_string"),
        ("http://8.8.4.4/request/a/b", "scheme_not_allowed"),
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
        ("https://example.com/request/a/b", "host_name_not_allowed"),  # could rebind after a check
        ("https://[::127.0.0.1]/request/a/b", "local_address_not_allowed"),  # IPv4-compatible
        ("https://[64:ff9b::169.254.169.254]/x/y", "local_address_not_allowed"),  # NAT64
        ("https://[2002:7f00:1::]/request/a/b", "local_address_not_allowed"),  # 6to4 of 127.0.0.1
        ("https://bücher.example/request/a/b", "malformed"),
        ("https://8.8.4.4:99999/request/a/b", "malformed"),
        ("https://8.8.4.4/request/a b", "malformed"),
        ("https://8.8.4.4/" + "a" * 3000, "too_long"),
    ],
)
def test_refuses_unsafe_or_malformed_urls(raw: object, reason: str) -> None:
    with pytest.raises(InvalidControlUrl) as err:
        parse_control_url(raw)
    assert err.value.reason == reason


def test_local_lab_setting_admits_http_and_loopback_only() -> None:
    target = parse_control_url("http://127.0.0.1:8123/request/s1/tok", allow_local=True)
    assert target.origin == "http://127.0.0.1:8123"
    with pytest.raises(InvalidControlUrl):
        parse_control_url("ftp://127.0.0.1/request/s1/tok", allow_local=True)
    with pytest.raises(InvalidControlUrl):
        parse_control_url("http://u@127.0.0.1/request/s1/tok", allow_local=True)
