"""`scripts/package.sh`: the app as a CloudFormation/SAM template that passes cfn-lint,
built with a Python that Lambda supports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app import app

ROOT = Path(__file__).resolve().parents[2]
#: Lambda runtimes that cfn-lint does not flag as deprecated (E2533).
SUPPORTED = {"python3.12", "python3.13"}


# The first run builds a throwaway venv (~100 s here); later runs reuse it (~10 s).
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_package_gives_a_linted_template_with_the_api_and_every_schedule(
    tmp_path: Path, stage: str
) -> None:
    out = tmp_path / "package"
    proc = subprocess.run(
        ["bash", "scripts/package.sh", stage, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    assert "passes cfn-lint" in proc.stdout
    template = json.loads((out / "sam.json").read_text())
    assert (out / "deployment.zip").stat().st_size > 0
    resources: dict[str, Any] = template["Resources"]
    functions = [r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"]
    assert functions and {f["Properties"]["Runtime"] for f in functions} <= SUPPORTED

    # The API: every route of app.py, with its methods.
    [api] = [r for r in resources.values() if r["Type"] == "AWS::Serverless::Api"]
    paths = api["Properties"]["DefinitionBody"]["paths"]
    assert set(paths) == set(app.routes)
    for path, methods in app.routes.items():
        assert {m.lower() for m in methods} <= set(paths[path])

    # Every @app.schedule function as an EventBridge (SAM Schedule) rule.
    wanted = sorted(
        s.schedule_expression.to_string()
        for s in app.event_sources
        if hasattr(s, "schedule_expression")
    )
    rules = sorted(
        event["Properties"]["Schedule"]
        for f in functions
        for event in f["Properties"].get("Events", {}).values()
        if event["Type"] == "Schedule"
    )
    assert rules == wanted
    if stage == "prod":  # the hand-written policy, not chalice's app.py-only guess
        roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
        for role in roles:
            actions = {
                a
                for p in role["Properties"]["Policies"]
                for st in p["PolicyDocument"]["Statement"]
                for a in st["Action"]
            }
            assert {"s3:GetObject", "s3:PutObject", "sns:Publish"} <= actions
    # And every custom authorizer, if the app declares any.
    for name in getattr(app, "builtin_auth_handlers", []):
        assert any(name.name in key for key in resources), name.name
