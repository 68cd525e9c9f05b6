"""OpenAPI = behaviour for calibrated models too: schemathesis in-process, every phase and
check, on the shipped models with medical and wine calibrated (tests/service/_calibrated.py),
so the new answer fields, the CSV column and GET /models/{name}/calibration.png are held
to the document."""

from __future__ import annotations

import schemathesis
from _calibrated import write_calibrated, write_uncalibrated
from _contract import Served, config, install_rules, run
from _servicekit import SHIPPED
from fastapi.testclient import TestClient
from test_contract import assert_found_nothing, without_admin

from service.app import create_app
from service.settings import Settings


def test_schemathesis_on_calibrated_models_finds_nothing(tmp_path):
    for folder in sorted(SHIPPED.iterdir()):
        # Test maps for two models, the others without one (both kinds side by side).
        if folder.name in ("medical", "wine"):
            write_calibrated(tmp_path / folder.name, folder.name)
        else:
            write_uncalibrated(tmp_path / folder.name, folder.name)
    served = Served.read(tmp_path)
    assert served.calibrated == {"medical", "wine"}
    app = create_app(Settings(model_dir=tmp_path))
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(3))
        schema = without_admin(schema)
        install_rules(schema, served)
        outcome = run(schema)
    assert_found_nothing(outcome, min_cases=500)
    figures = {(path, status) for _, path, status in outcome.statuses if "calibration" in path}
    assert any(status == 200 for _, status in figures), figures
