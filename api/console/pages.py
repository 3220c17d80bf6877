"""The console's pages (GET): each reads what the REST route for it reads (the handler itself where one exists),
plus the names and orders a person needs to recognise an item. Actions: api.console.actions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, or_, select

from api.console import render
from api.console.session import (
    CONSOLE_ROLES,
    CSRF_FIELD,
    PREFIX,
    Staff,
    check_login_csrf,
    clear_session_cookies,
    login_csrf,
    session_cookies,
)
from api.deps import Session, Temporal
from api.ratelimits import login_guard
from api.routes.disputes import get_dispute
from api.routes.notifications import list_dead_letters
from api.routes.orders import list_stuck_orders
from api.routes.trust import list_dispute_queue, list_trust_flags
from api.schemas import TokenForm
from bazaar.accounts import sessions
from bazaar.errors import DomainError
from bazaar.models import Listing, Order, User
from bazaar.orders import rules
from bazaar.orders.types import OrderAction, Party
from bazaar.temporal import dispute_workflow_id, order_workflow_id
from bazaar.text import control_character_problem
from bazaar.trust.models import Notification, Review

router = APIRouter(prefix=PREFIX, include_in_schema=False)
LIMIT = 100


async def names_of(db: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, User]:
    if not ids:
        return {}
    return {u.id: u for u in (await db.scalars(select(User).where(User.id.in_(ids)))).all()}


async def orders_by_id(db: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, Order]:
    if not ids:
        return {}
    return {o.id: o for o in (await db.scalars(select(Order).where(Order.id.in_(ids)))).all()}


def _safe_next(value: str | None) -> str:
    """Only a console path (never another site) after login."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/disputes"


# What the user search takes (an email address or a name, or part of one).
SEARCH_CHARACTERS = 320

# ---- login ------------------------------------------------------------------------------------------------


@router.get("", response_class=RedirectResponse)
async def console_home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/disputes", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", login_csrf=login_csrf(request), next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    db: Session,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """The API's login (limits, lockout, password check, session), for support staff only."""
    check_login_csrf(request, csrf_token)

    def again(error: str, status: int) -> HTMLResponse:
        return render(
            request,
            "login.html",
            status_code=status,
            login_csrf=login_csrf(request),
            next=_safe_next(next),
            error=error,
            email=email,
        )

    try:
        form = TokenForm.model_validate({"username": email, "password": password})  # the API's login form
    except ValidationError:
        return again("the email or the password holds characters no login has", 422)
    try:
        user = await (await login_guard(request)).login(db, form.username, form.password)
    except DomainError as exc:
        return again(exc.message, exc.status)
    if not set(user.roles) & CONSOLE_ROLES:
        return again("this console is for support staff (the support role)", 403)
    session_cookies(request, await sessions.start(db, user))
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", response_class=RedirectResponse)
async def logout(request: Request, staff: Staff, db: Session) -> RedirectResponse:
    if staff.session_id is not None:
        await sessions.end(db, staff.session_id)
    clear_session_cookies(request)
    return RedirectResponse(f"{PREFIX}/login", status_code=303)


# ---- disputes ---------------------------------------------------------------------------------------------


@router.get("/disputes", response_class=HTMLResponse)
async def dispute_queue(request: Request, staff: Staff, db: Session) -> HTMLResponse:
    cases = await list_dispute_queue(staff, db, None, LIMIT)
    orders = await orders_by_id(db, {c.order_id for c in cases})
    people = await names_of(db, {u for o in orders.values() for u in (o.buyer_id, o.seller_id)})
    return render(request, "disputes.html", page="disputes", cases=cases, orders=orders, people=people)


@router.get("/disputes/{order_id}", response_class=HTMLResponse)
async def dispute_case(request: Request, order_id: uuid.UUID, staff: Staff, db: Session) -> HTMLResponse:
    try:
        case = await get_dispute(order_id, staff, db)
    except DomainError as exc:
        return render(request, "error.html", status_code=exc.status, page="disputes", message=exc.message)
    order = (await orders_by_id(db, {order_id}))[order_id]
    authors = {m.author_id for m in case.thread if m.author_id} | {order.buyer_id, order.seller_id}
    return render(
        request,
        "case.html",
        page="disputes",
        case=case,
        order=order,
        people=await names_of(db, authors),
        order_workflow=order_workflow_id(str(order_id)),
        case_workflow=dispute_workflow_id(str(order_id)),
    )


# ---- orders that need a person ----------------------------------------------------------------------------


# Where support's cancel-and-refund is a move (a completed order's payout is retried, or refunded, instead).
SUPPORT_MAY_CANCEL = frozenset(
    status for status, parties in rules.RULES[OrderAction.CANCEL].items() if Party.SUPPORT in parties
)


@router.get("/stuck-orders", response_class=HTMLResponse)
async def stuck_orders(request: Request, staff: Staff, db: Session, temporal: Temporal) -> HTMLResponse:
    stuck = (await list_stuck_orders(staff, temporal, LIMIT)).items
    rows = await orders_by_id(db, {uuid.UUID(s.order_id) for s in stuck})
    orders = {str(order_id): order for order_id, order in rows.items()}
    return render(
        request, "stuck.html", page="stuck", stuck=stuck, orders=orders, cancellable=SUPPORT_MAY_CANCEL
    )


# ---- dead letters -----------------------------------------------------------------------------------------


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(request: Request, staff: Staff, db: Session) -> HTMLResponse:
    letters = await list_dead_letters(staff, db, LIMIT)
    notes = {
        n.id: n
        for n in (
            await db.scalars(
                select(Notification).where(Notification.id.in_([d.notification_id for d in letters]))
            )
        ).all()
    }
    people = await names_of(db, {d.recipient_id for d in letters})
    return render(request, "dead_letters.html", page="dead", letters=letters, notes=notes, people=people)


# ---- trust flags ------------------------------------------------------------------------------------------


@router.get("/trust-flags", response_class=HTMLResponse)
async def trust_flags(request: Request, staff: Staff, db: Session) -> HTMLResponse:
    flags = await list_trust_flags(staff, db, LIMIT)
    subjects = {f.subject_id for f in flags}
    reviews: dict[uuid.UUID, list[Review]] = {s: [] for s in subjects}
    if subjects:
        visible = await db.scalars(
            select(Review)
            .where(Review.subject_id.in_(subjects), Review.hidden_at.is_(None))
            .order_by(Review.created_at.desc())
            .limit(20 * len(subjects))
        )
        for review in visible.all():
            reviews[review.subject_id].append(review)
    authors = {r.author_id for rs in reviews.values() for r in rs}
    people = await names_of(db, subjects | authors)
    return render(request, "trust_flags.html", page="trust", flags=flags, reviews=reviews, people=people)


# ---- a user's orders and listings -------------------------------------------------------------------------


@router.get("/users", response_class=HTMLResponse)
async def find_users(
    request: Request, staff: Staff, db: Session, q: Annotated[str, Query()] = ""
) -> HTMLResponse:
    found: list[User] = []
    problem = control_character_problem(q, multiline=False) or (
        f"a search is at most {SEARCH_CHARACTERS} characters" if len(q) > SEARCH_CHARACTERS else None
    )
    if problem:
        return render(request, "users.html", status_code=422, page="users", q="", found=found, error=problem)
    if q.strip():
        # Matched as typed: a % or _ in it is that character, not a wildcard (found from outside: "%" listed
        # every user).
        typed = q.strip().lower()
        found = list(
            (
                await db.scalars(
                    select(User)
                    .where(
                        or_(
                            func.lower(User.email).contains(typed, autoescape=True),
                            func.lower(User.display_name).contains(typed, autoescape=True),
                        )
                    )
                    .order_by(User.email)
                    .limit(50)
                )
            ).all()
        )
    return render(request, "users.html", page="users", q=q, found=found, error=None)


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user_detail(request: Request, user_id: uuid.UUID, staff: Staff, db: Session) -> HTMLResponse:
    user = await db.get(User, user_id)
    if user is None:
        return render(request, "error.html", status_code=404, page="users", message="No such user.")
    orders = (
        await db.scalars(
            select(Order)
            .where(or_(Order.buyer_id == user_id, Order.seller_id == user_id))
            .order_by(Order.created_at.desc())
            .limit(LIMIT)
        )
    ).all()
    listings = (
        await db.scalars(
            select(Listing)
            .where(Listing.seller_id == user_id)
            .order_by(Listing.created_at.desc())
            .limit(LIMIT)
        )
    ).all()
    people = await names_of(db, {u for o in orders for u in (o.buyer_id, o.seller_id)})
    context: dict[str, Any] = {"user": user, "orders": orders, "listings": listings, "people": people}
    return render(request, "user.html", page="users", **context)
