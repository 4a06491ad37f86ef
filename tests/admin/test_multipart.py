"""multipart/form-data parsing for Admin bodies (servegate.multipart), and its errors through the API."""

from __future__ import annotations

import pytest
from admin_client import Admin

from servegate import multipart


def body(*parts: bytes, boundary: bytes = b"XyZ") -> bytes:
    return b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + boundary + b"--\r\n"


def test_fields_types_charsets_and_encodings() -> None:
    raw = body(
        b'Content-Disposition: form-data; name="plain"\r\n\r\nhello',
        b'Content-Disposition: form-data; name="j"\r\nContent-Type: application/json\r\n\r\n{"a": 1}',
        b'Content-Disposition: form-data; name="latin"\r\nContent-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9',
        b'content-disposition: form-data; name="b64"\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=',
        b'Content-Disposition: form-data; name="semi;colon \\"q\\""\r\n\r\n',
        b"Content-Disposition: form-data\r\n\r\nnameless",
        b"\r\nno headers at all",
    )
    parts = multipart.parse(b"preamble\r\n" + raw + b"epilogue", 'multipart/form-data; boundary="XyZ"')
    got = [(p.name, p.content_type, p.charset, p.data) for p in parts]
    assert got == [
        ("plain", "", None, b"hello"),
        ("j", "application/json", None, b'{"a": 1}'),
        ("latin", "text/plain", "latin-1", b"caf\xe9"),
        ("b64", "", None, b"hi"),
        ('semi;colon "q"', "", None, b""),
        (None, "", None, b"nameless"),
        (None, "", None, b"no headers at all"),
    ]


def test_a_value_may_contain_line_breaks_and_dashes() -> None:
    raw = body(b'Content-Disposition: form-data; name="v"\r\n\r\nline1\r\n--not-the-boundary\r\nline3')
    assert multipart.parse(raw, "multipart/form-data; boundary=XyZ")[0].data == (
        b"line1\r\n--not-the-boundary\r\nline3"
    )


@pytest.mark.parametrize(
    ("raw", "ctype"),
    [
        (body(b'Content-Disposition: form-data; name="a"\r\n\r\n1'), "multipart/form-data"),  # no boundary
        (body(b'Content-Disposition: form-data; name="a"\r\n\r\n1'), "multipart/form-data; boundary=other"),
        (b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1', "multipart/form-data; boundary=XyZ"),
        (b"--XyZ\r\nbroken header line\r\n\r\nv\r\n--XyZ--", "multipart/form-data; boundary=XyZ"),
        (b"--XyZ\r\nContent-Disposition: form-data\r\n", "multipart/form-data; boundary=XyZ"),
        (b"--XyZgarbage\r\n", "multipart/form-data; boundary=XyZ"),
    ],
)
def test_malformed_bodies(raw: bytes, ctype: str) -> None:
    with pytest.raises(multipart.MultipartError):
        multipart.parse(raw, ctype)


async def test_multipart_errors_through_the_api(admin: Admin) -> None:
    ctype = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    r = await admin.post("/consumers", data=b"--XyZ\r\nnot a header\r\n\r\nx\r\n--XyZ--\r\n", headers=ctype)
    assert (r.status, r.json) == (400, {"message": "Cannot parse multipart body"})
    r = await admin.post("/consumers", data=b"no boundary here", headers=ctype)
    assert (r.status, r.json) == (400, {"message": "Cannot parse multipart body"})
    bad_json = body(b'Content-Disposition: form-data; name="tags"\r\nContent-Type: application/json\r\n\r\n[')
    r = await admin.post("/consumers", data=bad_json, headers=ctype)
    assert (r.status, r.json) == (400, {"message": "Cannot parse JSON body"})
    many = body(*[b'Content-Disposition: form-data; name="f%d"\r\n\r\nv' % i for i in range(1001)])
    r = await admin.post("/consumers", data=many, headers=ctype)
    assert (r.status, r.json) == (400, {"message": "Too many arguments"})
    ok = body(
        b'Content-Disposition: form-data; name="username"\r\n\r\nmp-user',
        b'Content-Disposition: form-data; name="tags"\r\nContent-Type: application/json\r\n\r\n["a", "b"]',
    )
    c = await admin.ok("POST", "/consumers", 201, data=ok, headers=ctype)
    assert (c["username"], c["tags"]) == ("mp-user", ["a", "b"])
