"""A moto S3 server on loopback for storage tests (a separate process: Ray workers reach it too).

`moto_s3()` starts `moto` bound to 127.0.0.1 on a free port chosen by the OS, points the AWS
environment of this process (and of every process started from it afterwards: Ray workers) at it
with dummy credentials, and stops it on exit. Nothing leaves the machine: the endpoint is loopback
and the instance-metadata lookup is disabled.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Iterator

_SERVER = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
print(s.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the parent closes our stdin (or dies)
s.stop()
"""

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


@contextlib.contextmanager
def moto_s3(bucket: str = "stylesync-test") -> Iterator[str]:
    """Yields the endpoint URL; the bucket exists. The environment is restored afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    saved = {k: os.environ.get(k) for k in (*ENV, "AWS_ENDPOINT_URL")}
    try:
        port = int(proc.stdout.readline().strip() or 0)
        if not port:
            raise RuntimeError(f"moto server did not start (exit {proc.poll()})")
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
        _forget_clients()
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        deadline = time.time() + 30
        while True:
            try:
                fs.mkdir(bucket)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        _forget_clients()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _forget_clients() -> None:
    """Cached s3fs instances hold a client bound to the endpoint they were created with."""
    with contextlib.suppress(ImportError):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
