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


def test_workflow_data_and_logs_in_a_bucket(fresh_platform: Platform, tmp_path: Path) -> None:
    """workflow_data and workflow_log on S3: task-to-task data and archived logs live in the
    bucket, so logs survive the server's local folder being wiped."""
    import json as _json
    import shutil

    endpoint, key_id, secret = _s3()
    bucket = f"osmo-store-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    cred = _json.dumps(
        {
            "access_key_id": key_id,
            "access_key": secret,
            "override_url": endpoint,
            "addressing_style": "path",
        }
    )
    p = fresh_platform
    p.extra_env.update(
        OSMO_DATA_URL=f"s3://{bucket}/data",
        OSMO_DATA_CREDENTIAL=cred,
        OSMO_LOG_URL=f"s3://{bucket}/logs",
        OSMO_LOG_CREDENTIAL=cred,
    )
    p.start()
    path = tmp_path / "wf.yaml"
    path.write_text(
        "workflow:\n  name: bucketed\n  tasks:\n"
        "  - {name: a, image: x, command: [sh, -c, 'echo from-a > {{output}}/v; echo log-of-a']}\n"
        "  - {name: b, image: x, command: [sh, -c, 'cat {{input:0}}/v'], inputs: [{task: a}]}\n"
    )
    wf_id = p.submit(path)
    assert p.wait(wf_id, timeout=120)["status"] == "COMPLETED"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"data/{wf_id}/a/v" in keys
    assert {f"logs/{wf_id}/a.0.log", f"logs/{wf_id}/b.0.log"} <= keys
    assert p.logs(wf_id, "--task", "b").strip() == "from-a"
    # Lose the server's local log folder: the archive still serves the logs.
    p.stop()
    shutil.rmtree(p.home / "logs")
    p.start()
    assert "log-of-a" in p.logs(wf_id, "--task", "a")
    assert p.logs(wf_id, "--task", "b").strip() == "from-a"
