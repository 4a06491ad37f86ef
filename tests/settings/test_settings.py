from pathlib import Path

import pytest

from servegate.settings import Listen, SettingsError, load_settings


def test_defaults_follow_kong():
    s = load_settings({})
    assert s.proxy_listen == [Listen("0.0.0.0", 8000), Listen("0.0.0.0", 8443, ssl=True)]
    assert s.admin_listen == [Listen("127.0.0.1", 8001)]
    assert s.database == "sqlite"
    assert s.sqlite_path == str(Path(s.prefix) / "servegate.db")
    assert s.workers == 1


def test_servegate_env_wins_over_kong_env():
    s = load_settings({"SERVEGATE_PG_DATABASE": "a", "KONG_PG_DATABASE": "b", "KONG_PG_USER": "u"})
    assert s.pg_database == "a"
    assert s.pg_user == "u"
    assert s.sources["pg_user"] == "KONG_PG_USER"


def test_conf_file_is_below_env(tmp_path):
    conf = tmp_path / "servegate.conf"
    conf.write_text("# comment\npg_port = 6543\nlog_level = debug\n")
    s = load_settings({"SERVEGATE_LOG_LEVEL": "warn"}, str(conf))
    assert s.pg_port == 6543
    assert s.log_level == "warn"


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"SERVEGATE_PG_PORT": "abc"}, "invalid pg_port"),
        ({"SERVEGATE_PG_PORT": "70000"}, "invalid pg_port"),
        ({"SERVEGATE_DATABASE": "mysql"}, "invalid database"),
        ({"KONG_PROXY_LISTEN": "0.0.0.0"}, "invalid proxy_listen"),
        ({"SERVEGATE_ADMIN_LISTEN": "127.0.0.1:8001 bogus"}, "invalid admin_listen"),
        ({"SERVEGATE_WORKERS": "0"}, "invalid workers"),
        ({"SERVEGATE_SSL_CERT": "/x.pem"}, "ssl_cert_key"),
        ({"SERVEGATE_PG_PASSWORD_FILE": "/nonexistent/pw"}, "invalid pg_password_file"),
    ],
)
def test_bad_setting_names_itself_in_one_line(env, fragment):
    with pytest.raises(SettingsError) as e:
        load_settings(env)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_conf_setting_is_rejected(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("no_such_thing = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'no_such_thing'"):
        load_settings({}, str(conf))


def test_password_file_and_dsn(tmp_path):
    pw = tmp_path / "POSTGRES_PASSWORD"
    pw.write_text("s3cr/t\n")
    s = load_settings({"KONG_PG_PASSWORD_FILE": str(pw), "KONG_PG_HOST": "db", "KONG_PG_USER": "kong"})
    assert s.pg_password == "s3cr/t"
    assert s.pg_dsn() == "postgresql://kong:s3cr%2Ft@db:5432/kong"
    assert s.redacted()["pg_password"] == "******"


def test_listen_variants():
    s = load_settings({"SERVEGATE_PROXY_LISTEN": "[::1]:9000, 127.0.0.1:9443 ssl", "SERVEGATE_ADMIN_LISTEN": "off"})
    assert s.proxy_listen == [Listen("::1", 9000), Listen("127.0.0.1", 9443, ssl=True)]
    assert s.admin_listen == []


def test_worker_alias_and_auto():
    assert load_settings({"KONG_NGINX_WORKER_PROCESSES": "3"}).workers == 3
    assert load_settings({"SERVEGATE_WORKERS": "auto"}).workers >= 1
