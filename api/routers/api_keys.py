from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from api.deps import AdminKey, ContainerDep, get_principal
from api.errors import ApiProblem
from api.routing import LedgerRoute
from api.schemas.resources import ApiKeyCreate, ApiKeyCreated, ApiKeyIdentity
from infra.keys import GRANTS, Principal

router = APIRouter(route_class=LedgerRoute, prefix="/v1/api-keys", tags=["api keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def mint_api_key(body: ApiKeyCreate, container: ContainerDep, principal: AdminKey) -> ApiKeyCreated:
    if body.customer_id is not None and body.role != "ingest":
        raise ApiProblem(
            422,
            "Invalid request",
            "only ingest keys are scoped to a customer",
            code="validation_error",
            errors=[{"field": "customer_id", "message": "only for role ingest"}],
        )
    key_id, raw = container.keys.mint(
        role=body.role, name=body.name, customer_id=body.customer_id, created_by=principal.key_id
    )
    return ApiKeyCreated(id=key_id, key=raw, role=body.role, name=body.name, customer_id=body.customer_id)


@router.get("/me", response_model=ApiKeyIdentity)
def who_am_i(principal: Annotated[Principal, Depends(get_principal)]) -> ApiKeyIdentity:
    """The calling key's role and what it may do (any valid key): a client such as the
    dashboard shows only the actions its key may take."""
    return ApiKeyIdentity(
        key_id=principal.key_id,
        role=principal.role,
        customer_id=principal.customer_id,
        permissions=sorted(GRANTS.get(principal.role, frozenset())),
    )
