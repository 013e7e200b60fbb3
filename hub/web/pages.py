"""The browser pages: the window console (/console), the steward dashboard (/steward) and the citizen's
usage page (/me). Server-rendered; the server acts as the signed-in client through the same services as
the API, so the browser never holds an API token (only an HttpOnly session cookie), and every form post
carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from hub.api.deps import KeyringDep, SessionDep
from hub.api.jose import detached_jws
from hub.web import charts
from hub.web.i18n import translator
from materials_store.cases import remember_case_materials
from materials_store.errors import OneCertError
from materials_store.identity import InvalidIdentifier
from materials_store.models import CaseMaterial, Client, Material, MaterialType, UsageRecord
from materials_store.store import canonical_json, usage_for_subject
from materials_store.web_sessions import SignedIn, current, end, redeem_link

COOKIE = "onecert_session"
HOME = {"window": "/console", "steward": "/steward", "citizen": "/me"}
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """No valid session: the page answers with the sign-in page."""


def _lang(request: Request) -> str:
    wanted = request.query_params.get("lang") or request.cookies.get("lang") or "zh"
    return "en" if wanted == "en" else "zh"


def _page(
    request: Request, template: str, visitor: SignedIn | None, status: int = 200, **context: Any
) -> HTMLResponse:
    lang = _lang(request)
    response = templates.TemplateResponse(
        request, template, {"t": translator(lang), "lang": lang, "visitor": visitor, **context}, status_code=status
    )
    if request.query_params.get("lang"):
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="strict", httponly=True)
    return response


def _visitor(request: Request, session: SessionDep) -> SignedIn:
    visitor = current(session, session_id=request.cookies.get(COOKIE))
    if visitor is None:
        raise SignInRequired
    return visitor


def _as(kind: str) -> Any:
    def gate(visitor: Annotated[SignedIn, Depends(_visitor)]) -> SignedIn:
        if visitor.client.kind != kind:
            raise HTTPException(status_code=403, detail=f"this page is for {kind} clients")
        return visitor

    return gate


Window = Annotated[SignedIn, Depends(_as("window"))]
Steward = Annotated[SignedIn, Depends(_as("steward"))]
Citizen = Annotated[SignedIn, Depends(_as("citizen"))]


def _check_csrf(visitor: SignedIn, token: str) -> None:
    if token != visitor.csrf:
        raise HTTPException(status_code=403, detail="the form expired; reload the page")


def install(app: FastAPI) -> None:
    """Join the pages to the app, with their static files and the sign-in redirect."""
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    app.include_router(router)

    async def sign_in(request: Request, _: Exception) -> Response:
        return _page(request, "signin.html", None, status=401)

    app.add_exception_handler(SignInRequired, sign_in)


# -- sign-in ------------------------------------------------------------------------------------


@router.get("/signin")
def signin(request: Request, session: SessionDep, token: str | None = None) -> Response:
    """A one-time link signs in; without one, the page says how to get one."""
    if not token:
        return _page(request, "signin.html", None)
    try:
        session_id, visitor = redeem_link(session, token=token)
    except OneCertError as error:
        return _page(request, "signin.html", None, status=400, error=error.detail)
    session.commit()
    response = RedirectResponse(HOME.get(visitor.client.kind, "/signin"), status_code=303)
    secure = str(request.url).startswith("https://")
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/signout")
def signout(request: Request, session: SessionDep) -> Response:
    end(session, session_id=request.cookies.get(COOKIE))
    session.commit()
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/")
def home(request: Request, session: SessionDep) -> Response:
    visitor = current(session, session_id=request.cookies.get(COOKIE))
    return RedirectResponse(HOME.get(visitor.client.kind, "/signin") if visitor else "/signin", status_code=303)


# -- window console -----------------------------------------------------------------------------


def _plans() -> dict[str, Any]:
    from hub.api.services.catalog import bundles, items

    return {"bundles": bundles(), "items": items()}


def _plan_fields(plan: str) -> dict[str, str | None]:
    kind, _, code = plan.partition(":")
    return {"service_item": code if kind == "item" else None, "bundle": code if kind == "bundle" else None}


def _names() -> dict[str, str]:
    from contracts.service_items import load_service_catalogue

    catalogue = load_service_catalogue()
    names = {code: item.name_zh for code, item in catalogue.items.items()}
    names.update({code: bundle.name_zh for code, bundle in catalogue.bundles.items()})
    return names


@router.get("/console")
def console(request: Request, visitor: Window) -> HTMLResponse:
    return _page(request, "console.html", visitor, plans=_plans(), form={})


def _run_lookup(
    request: Request, session: Any, keyring: Any, visitor: SignedIn, form: dict[str, str], *, notice: str | None = None
) -> HTMLResponse:
    from hub.api.services.lookups import LookupRequest, lookup

    handle = request.app.state.store
    try:
        answer = lookup(
            session, keyring=keyring, caller=visitor.client, handle=handle,
            request=LookupRequest(id=form["id"], case_ref=form["case_ref"], purpose=form["purpose"],
                                  **_plan_fields(form["plan"])),
        )  # fmt: skip
    except InvalidIdentifier as error:
        return _page(request, "console.html", visitor, status=422, plans=_plans(), form=form,
                     error=f"{error.reason.value}: {error.detail}")  # fmt: skip
    except OneCertError as error:
        return _page(request, "console.html", visitor, status=error.status, plans=_plans(), form=form,
                     error=error.detail)  # fmt: skip
    materials = {m.id: m for m in answer.materials}
    if answer.readiness is not None:  # the case now relies on what is on file: remembered for its receipt and alerts
        reused = [n.material_id for n in answer.readiness.requirements
                  if n.material_id and n.state in ("on_file_fresh", "on_file_stale")]  # fmt: skip
        remember_case_materials(session, case_ref=answer.case_ref, client_id=visitor.client.id, material_ids=reused)
        session.commit()
    return _page(
        request, "console.html", visitor, plans=_plans(), form=form, answer=answer, materials=materials,
        names=_names(), notice=notice,
    )  # fmt: skip


Field = Annotated[str, Form()]


@router.post("/console/lookup")
def console_lookup(
    request: Request, session: SessionDep, keyring: KeyringDep, visitor: Window,
    id: Field, case_ref: Field, purpose: Field, plan: Field, csrf: Field,
) -> HTMLResponse:  # fmt: skip
    _check_csrf(visitor, csrf)
    form = {"id": id, "case_ref": case_ref, "purpose": purpose, "plan": plan}
    return _run_lookup(request, session, keyring, visitor, form)


@router.post("/console/promise")
def console_promise(
    request: Request, session: SessionDep, keyring: KeyringDep, visitor: Window,
    id: Field, case_ref: Field, purpose: Field, plan: Field, csrf: Field, type: Field,
) -> HTMLResponse:  # fmt: skip
    from hub.api.services.promises import PromiseRequest, create_promise

    _check_csrf(visitor, csrf)
    form = {"id": id, "case_ref": case_ref, "purpose": purpose, "plan": plan}
    try:
        promise, _ = create_promise(
            session, keyring=keyring, caller=visitor.client,
            request=PromiseRequest(id=id, case_ref=case_ref, type=type, **_plan_fields(plan)),
        )  # fmt: skip
    except OneCertError as error:
        return _run_lookup(request, session, keyring, visitor, form, notice=error.detail)
    return _run_lookup(request, session, keyring, visitor, form, notice=f"{type}: {promise.due_date.isoformat()}")


@router.get("/console/materials/{material_id}")
def console_material(
    request: Request, session: SessionDep, keyring: KeyringDep, visitor: Window, material_id: str, case_ref: str
) -> HTMLResponse:
    from hub.api.services.materials import read_material

    try:
        sealed = read_material(
            session, keyring=keyring, caller=visitor.client, material_id=material_id, case_ref=case_ref
        )
    except OneCertError as error:
        raise HTTPException(status_code=error.status, detail=error.detail) from None
    return _page(request, "material.html", visitor, sealed=sealed, case_ref=case_ref)


def _receipt(session: Any, keyring: Any, visitor: SignedIn, case_ref: str) -> tuple[dict[str, Any], str]:
    """The case's reuse receipt (what its latest lookup reused) and the hub's detached JWS over it."""
    record = session.scalars(
        select(UsageRecord)
        .where(UsageRecord.client_id == visitor.client.id, UsageRecord.case_ref == case_ref,
               UsageRecord.action == "lookup")
        .order_by(UsageRecord.seq.desc())
        .limit(1)
    ).first()  # fmt: skip
    if record is None:
        raise HTTPException(status_code=404, detail="no lookup for this case at this window")
    types = {t.code: t for t in session.scalars(select(MaterialType))}
    reused_ids = select(CaseMaterial.material_id).where(
        CaseMaterial.case_ref == case_ref, CaseMaterial.client_id == visitor.client.id
    )
    reused = []
    for material in session.scalars(select(Material).where(Material.id.in_(reused_ids))):
        kind = types.get(material.type_code)
        reused.append({
            "id": material.id, "type": material.type_code, "name_zh": kind.name_zh if kind else material.type_code,
            "issuer": material.issuer, "issued_at": material.issued_at.isoformat(),
            "valid_until": material.valid_until.isoformat() if material.valid_until else None,
            "payload_sha256": material.payload_sha256,
        })  # fmt: skip
    document = {
        "case_ref": case_ref, "window": visitor.client.name, "service_centre": visitor.client.org,
        "clerk": visitor.person, "purpose": record.purpose, "looked_up_at": record.at.isoformat(),
        "usage_record": {"seq": record.seq, "hash": record.hash}, "materials": sorted(reused, key=lambda m: m["type"]),
    }  # fmt: skip
    key = keyring.current_signing_key
    return document, detached_jws(canonical_json(document), key)


@router.get("/console/cases/{case_ref}/receipt")
def console_receipt(request: Request, session: SessionDep, keyring: KeyringDep, visitor: Window, case_ref: str) -> Response:
    document, signature = _receipt(session, keyring, visitor, case_ref)
    if request.query_params.get("format") == "json":
        return JSONResponse(
            {"receipt": document, "signature": signature},
            headers={"Content-Disposition": f'attachment; filename="receipt-{case_ref}.json"'},
        )
    head = signature.split(".")[0]
    return _page(request, "receipt.html", visitor, receipt=document, signature=signature, head=head)


# -- citizen ------------------------------------------------------------------------------------


@router.get("/me")
def me(request: Request, session: SessionDep, visitor: Citizen) -> HTMLResponse:
    index = visitor.client.subject_index
    records = usage_for_subject(session, subject_index=index, limit=200) if index else []
    names = {c.id: c for c in session.scalars(select(Client).where(Client.id.in_({r.client_id for r in records})))}
    return _page(request, "me.html", visitor, records=records, clients=names)


# -- steward ------------------------------------------------------------------------------------


@router.get("/steward")
def steward(request: Request, session: SessionDep, keyring: KeyringDep, visitor: Steward) -> HTMLResponse:
    from hub.api.services.steward import conflicts_page, quarantine_page, source_history, sources_overview

    selected = request.query_params.get("source")
    overview = sources_overview(session)
    bar_charts = {}
    for source in overview.sources:
        runs = source_history(session, source=source.source, runs=20).runs
        bar_charts[source.source] = charts.bars([r.loaded for r in runs], [r.quarantined for r in runs])
    trends: dict[str, str] = {}
    if selected:
        points: dict[str, list[float]] = defaultdict(list)
        for point in source_history(session, source=selected, runs=30).expectations:
            points[point.rule].append(point.pass_rate)
        trends = {rule: charts.sparkline(rates, label=rule) for rule, rates in sorted(points.items())}
    queue = quarantine_page(session, source=selected, status="open", run_id=None, rule=None, limit=25, offset=0)
    conflicts = conflicts_page(session, keyring=keyring, status="open", limit=25, offset=0)
    settings = request.app.state.store.settings
    return _page(
        request, "steward.html", visitor, overview=overview, bars=bar_charts, trends=trends, selected=selected,
        queue=queue, conflicts=conflicts, airflow_url=settings.airflow_url, now=dt.datetime.now(dt.UTC),
    )  # fmt: skip


@router.get("/steward/quarantine/{row_id}")
def steward_row(request: Request, session: SessionDep, keyring: KeyringDep, visitor: Steward, row_id: int) -> HTMLResponse:
    from hub.api.services.steward import quarantine_detail

    try:
        detail = quarantine_detail(session, keyring=keyring, steward=visitor.client, row_id=row_id)
    except OneCertError as error:
        raise HTTPException(status_code=error.status, detail=error.detail) from None
    return _page(request, "quarantine_row.html", visitor, detail=detail)


@router.post("/steward/quarantine/{row_id}/resolve")
async def steward_resolve(
    request: Request, session: SessionDep, keyring: KeyringDep, visitor: Steward, row_id: int
) -> Response:
    from hub.api.services.steward import Resolution, quarantine_detail, resolve_quarantine

    form = await request.form()
    _check_csrf(visitor, str(form.get("csrf", "")))
    action = str(form.get("action", ""))
    body: dict[str, Any] = {"action": action}
    if action == "discard":
        body["reason"] = str(form.get("reason", "")) or None
    else:
        body["row"] = {k[2:]: (str(v) or None) for k, v in form.items() if k.startswith("f_")}
    try:
        resolve_quarantine(session, keyring=keyring, steward=visitor.client, row_id=row_id,
                           resolution=Resolution.model_validate(body))  # fmt: skip
    except (OneCertError, ValueError) as error:
        session.rollback()
        detail = quarantine_detail(session, keyring=keyring, steward=visitor.client, row_id=row_id)
        message = error.detail if isinstance(error, OneCertError) else "the resolution is incomplete"
        return _page(request, "quarantine_row.html", visitor, status=422, detail=detail, error=message)
    return RedirectResponse("/steward", status_code=303)

