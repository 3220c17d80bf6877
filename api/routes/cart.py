"""The buyer's cart (bazaar/checkout/cart.py): lines of any sellers' listings, re-checked whenever it is read."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from api.cart_schemas import CartLineIn, CartOut
from api.deps import Buyer, Session
from api.openapi import errors
from bazaar.checkout import cart
from bazaar.errors import ErrorCode

router = APIRouter(prefix="/v1/cart", tags=["cart"])


@router.get("", response_model=CartOut)
async def get_cart(buyer: Buyer, session: Session) -> CartOut:
    """The cart as it stands now: each line with the listing's price and stock now, and its `problem` if it cannot
    be checked out as it is (sold out, no longer for sale, a new price to accept by setting the line again)."""
    return CartOut.of(await cart.read(session, buyer.user_id))


@router.put(
    "/lines/{listing_id}",
    response_model=CartOut,
    responses=errors(
        ErrorCode.LISTING_NOT_AVAILABLE,
        ErrorCode.SOLD_OUT,
        ErrorCode.CART_FULL,
        ErrorCode.OWN_LISTING,
        ErrorCode.CURRENCY_MISMATCH,
        ErrorCode.AMOUNT_NOT_CHARGEABLE,
    ),
)
async def set_cart_line(listing_id: uuid.UUID, body: CartLineIn, buyer: Buyer, session: Session) -> CartOut:
    """Put `quantity` of a listing in the cart, or change the line's quantity; the line takes the listing's price
    now. 404 when there is no such listing. Refused when the listing is not for sale or has fewer left (`details.available`), when the cart would hold
    more than 50 listings, another currency than its lines', or a total the provider cannot charge. Holds no stock:
    a checkout reserves it."""
    return CartOut.of(await cart.set_line(session, buyer.user_id, listing_id, body.quantity))


@router.delete("/lines/{listing_id}", response_model=CartOut)
async def remove_cart_line(listing_id: uuid.UUID, buyer: Buyer, session: Session) -> CartOut:
    """Take a listing out of the cart (404 if it is not in it)."""
    return CartOut.of(await cart.remove_line(session, buyer.user_id, listing_id))


@router.delete("", status_code=204, response_class=Response)
async def empty_cart(buyer: Buyer, session: Session) -> Response:
    """Take every line out of the cart."""
    await cart.empty(session, buyer.user_id)
    return Response(status_code=204)
