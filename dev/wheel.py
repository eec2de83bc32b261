#!/usr/bin/env python3
"""Build the cgi2wsgi wheel by hand (standard library only; called by dev/package).

The wheel's one payload is the binary, installed by pip into the venv's bin/ (as a
`.data/scripts` file), plus the man page under the venv's share/. It is tagged for the
CPython the binary embeds (cpXY) and for the glibc it needs (manylinux_2_NN_x86_64), so pip
refuses it where it cannot run.

    dev/wheel.py --binary BIN --man PAGE --version 0.2.0 --python 3.11 --glibc 2.35 --out DIR
"""
import argparse
import base64
import hashlib
import os
import zipfile

SUMMARY = "Host any Python WSGI app as a CGI program or FastCGI responder: one binary, CPython embedded"


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--man", required=True, help="the man page (roff)")
    p.add_argument("--license", required=True)
    p.add_argument("--readme", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--python", required=True, help="X.Y of the embedded CPython")
    p.add_argument("--glibc", required=True, help="the binary's glibc floor, e.g. 2.35")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    xy = a.python.replace(".", "")
    glibc = a.glibc.replace(".", "_")
    tag = f"cp{xy}-cp{xy}-manylinux_{glibc}_x86_64"
    dist = f"cgi2wsgi-{a.version}"
    info = f"{dist}.dist-info"
    with open(a.readme, encoding="utf-8") as f:
        readme = f.read()
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: cgi2wsgi\n"
        f"Version: {a.version}\n"
        f"Summary: {SUMMARY}\n"
        "License: MIT\n"
        # The binary embeds exactly this CPython: a venv of another version cannot use it.
        f"Requires-Python: =={a.python}.*\n"
        "Classifier: License :: OSI Approved :: MIT License\n"
        "Classifier: Operating System :: POSIX :: Linux\n"
        "Classifier: Programming Language :: Rust\n"
        f"Classifier: Programming Language :: Python :: {a.python}\n"
        "Classifier: Topic :: Internet :: WWW/HTTP :: WSGI :: Server\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )
    wheel = f"Wheel-Version: 1.0\nGenerator: cgi2wsgi dev/wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n"
    with open(a.binary, "rb") as f:
        binary = f.read()
    with open(a.man, "rb") as f:
        man = f.read()
    with open(a.license, "rb") as f:
        license_text = f.read()
    files = [
        (f"{dist}.data/scripts/cgi2wsgi", binary, 0o755),
        (f"{dist}.data/data/share/man/man1/cgi2wsgi.1", man, 0o644),
        (f"{info}/METADATA", metadata.encode(), 0o644),
        (f"{info}/WHEEL", wheel.encode(), 0o644),
        (f"{info}/LICENSE", license_text, 0o644),
    ]
    record = "\n".join(record_line(n, d) for n, d, _ in files) + f"\n{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode(), 0o644))

    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"{dist}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in files:
            # A fixed date: the same inputs give the same wheel.
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    print(path)


if __name__ == "__main__":
    main()
