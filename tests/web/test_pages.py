"""Window clerks, stewards and citizens in the browser: real headless Chromium against the live hub."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select

from connectors import stages
from connectors.pipeline import run_sync
from materials_store.models import QuarantineRow
from materials_store.store import count_quarantine
from tests.api.conftest import Live, register
from tests.items.test_sandbox_family import _mothers, _sync, _with_types
from tests.web.conftest import ARTIFACTS, shot, sign_in

NEWBORN = {"police.id_card", "police.hukou", "civil.marriage", "health.birth_certificate"}


def test_a_clerk_completes_the_newborn_bundle_and_prints_the_receipt(
    sandbox: Path, live: Live, browser: Any, viewport: tuple[str, dict[str, int]]
) -> None:
    name, size = viewport
    _sync(live, "police_id_card", "police_hukou", "health_births", "civil_marriages")
    mother = _with_types(live, [b["subject_id"] for b in _mothers(sandbox)], NEWBORN)
    window = register(live, "window", org="hz-xihu")
    page = sign_in(live, browser, window.client_id, "王芳", size)
    assert page.url.endswith("/console")
    assert page.context.cookies()[0]["httpOnly"] is True  # the session is out of the page's reach
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    page.fill("#id", mother[:-1] + ("0" if mother[-1] != "0" else "1"))  # a mistyped check character
    assert "校验码不符" in page.inner_text("#id-status")
    page.fill("#id", mother[:10])
    assert "还差 8 位" in page.inner_text("#id-status")
    page.fill("#id", mother)
    assert page.get_attribute("#id-status", "class") == "hint good"
    page.select_option("#plan", "bundle:life.newborn")
    page.fill("#case_ref", f"NB-{name}")
    page.fill("#purpose", "新生儿出生一件事")
    page.click("#lookup-button")
    page.wait_for_selector("#checklist")
    assert "可以即时受理" in page.inner_text("#decision")
    assert page.locator("tr.need.on_file_fresh").count() == 3
    assert page.locator("tr.need.issued_in_bundle").count() == 2
    assert mother not in page.inner_text("body")  # shown masked; only the clerk's own input holds it
    shot(page, f"console-newborn-{name}")

    page.locator("tr.need.on_file_fresh a.button").first.click()  # preview a reused material
    page.wait_for_selector("table.kv")
    assert page.locator("table.kv tr").count() > 3
    page.go_back()

    page.click("#receipt")
    page.wait_for_selector("#receipt-page")
    assert page.locator("tr.reused").count() == 3
    assert "usage #" in page.inner_text("#signature-ref")
    page.emulate_media(media="print")
    shot(page, f"receipt-{name}")
    page.pdf(path=str(ARTIFACTS / f"receipt-{name}.pdf"))  # what the print button produces
    assert page.locator("#print").is_hidden()  # buttons are not printed
    page.emulate_media(media="screen")
    with page.expect_download() as download:
        page.click("#download")
    saved = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    keys = KeySet.import_key_set(httpx.get(f"{live.url}/.well-known/jwks.json").json())
    from materials_store.store import canonical_json

    jws.deserialize_compact(saved["signature"], keys, algorithms=["EdDSA"], payload=canonical_json(saved["receipt"]))
    assert {m["type"] for m in saved["receipt"]["materials"]} == {"police.id_card", "police.hukou", "civil.marriage"}

    # The mother sees, on her own page, that this window used her data for this case.
    citizen = register(live, "citizen", subject_index=live.handle.keyring.blind_index(mother))
    mine = sign_in(live, browser, citizen.client_id, "市民", size)
    assert mine.url.endswith("/me")
    rows = mine.inner_text("#usage")
    assert f"NB-{name}" in rows and "新生儿出生一件事" in rows
    shot(mine, f"me-{name}")
    refused = mine.goto(f"{live.url}/console")  # a citizen is not a window
    assert refused is not None and refused.status == 403


def test_a_clerk_records_a_promise_for_a_waivable_material(sandbox: Path, live: Live, browser: Any) -> None:
    _sync(live, "police_id_card", "police_hukou", "health_births")  # no marriages synced yet
    mother = _with_types(live, [b["subject_id"] for b in _mothers(sandbox)],
                         {"police.id_card", "police.hukou", "health.birth_certificate"})  # fmt: skip
    page = sign_in(live, browser, register(live, "window").client_id, "李娜", {"width": 1280, "height": 800})
    page.fill("#id", mother)
    page.select_option("#plan", "item:police.newborn_registration")
    page.fill("#case_ref", "NB-P1")
    page.fill("#purpose", "新生儿入户")
    page.click("#lookup-button")
    page.wait_for_selector("#checklist")
    assert "容缺" in page.inner_text("#decision")
    marriage = page.locator("tr.need[data-types='civil.marriage']")
    assert "缺失，可容缺" in marriage.inner_text()
    marriage.locator("button.promise").click()
    page.wait_for_selector("#notice")
    marriage = page.locator("tr.need[data-types='civil.marriage']")
    assert re.search(r"已承诺，期限 \d{4}-\d{2}-\d{2}", marriage.inner_text())
    assert marriage.locator("button.promise").count() == 0
    shot(page, "console-promise")
    page.goto(f"{live.url}/console?lang=en")
    assert "Window console" in page.inner_text("h1")


def test_a_steward_resolves_a_quarantined_row_and_sees_the_count_fall(
    sandbox: Path, live: Live, browser: Any, viewport: tuple[str, dict[str, int]]
) -> None:
    name, size = viewport
    assert run_sync("police_hukou", handle=live.handle).state == "success"
    run_id = stages.run_id_for("medins_enrolments", "scheduled__web")
    for step in (stages.extract, stages.validate, stages.load, stages.quarantine, stages.commit):
        step(live.handle, source="medins_enrolments", run_id=run_id)
    with live.handle.sessions() as session:
        before = count_quarantine(session, source="medins_enrolments")
        target = next(
            row.id
            for row in session.scalars(select(QuarantineRow).where(QuarantineRow.source == "medins_enrolments"))
            if any(rule["rule"] == "issued_at_real_date" for rule in row.rules)
        )
    page = sign_in(live, browser, register(live, "steward").client_id, "数据管理员", size)
    assert page.url.endswith("/steward")
    medins = page.locator("tr[data-source='medins_enrolments']")
    assert "failed" in medins.inner_text() and medins.locator(".open-count").inner_text() == str(before)
    assert page.get_attribute("#airflow-link", "href").startswith("http://127.0.0.1:")
    assert page.get_attribute("#docs-link", "href") == "/data-docs/"
    shot(page, f"steward-{name}")

    page.goto(f"{live.url}/steward/quarantine/{target}")
    assert page.input_value("input[name='f_issued_at']") == "2023-02-30"
    page.click("#revalidate")  # unchanged: still broken
    assert "issued_at_real_date" in page.inner_text("#error")
    page.fill("input[name='f_issued_at']", "2026-02-28")
    page.click("#revalidate")
    page.wait_for_url("**/steward")
    medins = page.locator("tr[data-source='medins_enrolments']")
    assert medins.locator(".open-count").inner_text() == str(before - 1)
    page.goto(f"{live.url}/steward?source=medins_enrolments")
    assert page.locator(".sparks svg").count() > 3  # a pass-rate trend per expectation
    shot(page, f"steward-trends-{name}")


def test_pages_need_a_session_and_a_link_works_once(live: Live, browser: Any) -> None:
    from materials_store.web_sessions import issue_link

    anonymous = browser.new_context().new_page()
    response = anonymous.goto(f"{live.url}/console")
    assert response is not None and response.status == 401
    assert "onecert console link" in anonymous.content()
    window = register(live, "window")
    with live.handle.sessions() as session:
        token = issue_link(session, client_id=window.client_id, person="王芳")
        session.commit()
    first = browser.new_context().new_page()
    first.goto(f"{live.url}/signin?token={token}")
    assert first.url.endswith("/console")
    second = browser.new_context().new_page()
    replay = second.goto(f"{live.url}/signin?token={token}")
    assert replay is not None and replay.status == 400
    # A form posted without the session's CSRF token is refused.
    cookies = {c["name"]: c["value"] for c in first.context.cookies()}
    forged = httpx.post(f"{live.url}/console/lookup", cookies=cookies, data={
        "id": "x", "case_ref": "c", "purpose": "p", "plan": "bundle:life.newborn", "csrf": "guess"})  # fmt: skip
    assert forged.status_code == 403
    first.click("text=退出")
    first.wait_for_url("**/signin")
    assert first.goto(f"{live.url}/console").status == 401  # type: ignore[union-attr]
