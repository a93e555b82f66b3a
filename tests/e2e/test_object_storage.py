"""Workflow I/O against a real S3-compatible server (SeaweedFS, signatures checked)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import boto3
import pytest

from .platform import Platform, task

pytestmark = pytest.mark.e2e


def _s3() -> tuple[str, str, str]:
    endpoint = os.environ.get("OSMO_TEST_S3_ENDPOINT")
    if not endpoint:
        if os.environ.get("OSMO_TEST_ALLOW_SKIP_SERVICES") == "1":
            pytest.skip("OSMO_TEST_S3_ENDPOINT not set")
        pytest.fail(
            "OSMO_TEST_S3_ENDPOINT is not set: run the suite with 'make test' (it starts SeaweedFS)"
        )
    return (
        endpoint,
        os.environ["OSMO_TEST_S3_ACCESS_KEY_ID"],
        os.environ["OSMO_TEST_S3_SECRET_ACCESS_KEY"],
    )


def test_url_inputs_and_outputs_through_s3(platform: Platform, tmp_path: Path) -> None:
    endpoint, key_id, secret = _s3()
    bucket = f"osmo-e2e-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"alpha\n")
    s3.put_object(Bucket=bucket, Key="in/b.log", Body=b"not wanted\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"""
workflow:
  name: s3-io
  tasks:
  - name: produce
    image: alpine
    command: [sh, -c]
    args: ["ls {{{{input:0}}}}; tr a-z A-Z < {{{{input:0}}}}/a.txt > {{{{output}}}}/result.txt; echo scratch > {{{{output}}}}/scratch.tmp"]
    inputs:
    - url: s3://{bucket}/in/
      regex: '\\.txt$'
    outputs:
    - url: s3://{bucket}/out/
      regex: '\\.txt$'
  - name: consume
    image: alpine
    command: [sh, -c, "cat {{{{input:0}}}}/result.txt"]
    inputs:
    - url: s3://{bucket}/out/
    - task: produce
"""
    )
    # No DATA credential for the bucket yet: refused at submit, saying how to add one.
    refused = platform.osmo("workflow", "submit", str(path), check=False)
    assert (
        refused.returncode == 1
        and "no DATA credential of" in refused.stderr
        and f"s3://{bucket}" in refused.stderr
    )
    platform.osmo(
        "credential",
        "set",
        f"seaweed-{bucket}",
        "--type",
        "DATA",
        "--payload",
        f"endpoint=s3://{bucket}",
        "--payload",
        f"access_key_id={key_id}",
        "--payload",
        f"access_key={secret}",
        "--payload",
        f"override_url={endpoint}",
        "--payload",
        "addressing_style=path",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id, timeout=120)
    assert wf["status"] == "COMPLETED", (wf, platform.logs(wf_id))
    assert "a.txt" in platform.logs(wf_id, "--task", "produce") and "b.log" not in platform.logs(
        wf_id, "--task", "produce"
    )
    assert platform.logs(wf_id, "--task", "consume").strip() == "ALPHA"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == ["out/result.txt"]  # the regex kept scratch.tmp out
    assert secret not in platform.logs(wf_id)
    assert task(wf, "consume")["exit_code"] == 0


def test_wrong_data_credentials_fail_the_task_with_a_data_exit_code(
    platform: Platform, tmp_path: Path
) -> None:
    endpoint, key_id, secret = _s3()
    bucket = f"osmo-e2e-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    platform.osmo(
        "credential",
        "set",
        f"wrong-{bucket}",
        "--type",
        "DATA",
        "--payload",
        f"endpoint=s3://{bucket}",
        "--payload",
        f"access_key_id={key_id}",
        "--payload",
        "access_key=definitely-not-the-secret",
        "--payload",
        f"override_url={endpoint}",
        "--payload",
        "addressing_style=path",
    )
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"workflow:\n  name: s3-denied\n  tasks:\n  - name: t\n    image: alpine\n    command: [cat, /osmo/data/input/0/x]\n"
        f"    inputs: [{{url: 's3://{bucket}/'}}]\n"
    )
    wf = platform.wait(platform.submit(path), timeout=120)
    t = task(wf, "t")
    assert wf["status"] == "FAILED" and t["exit_code"] in (2010, 2013, 2014), t
