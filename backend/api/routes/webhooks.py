"""`POST /v1/webhooks/labelled-data`: signed deliveries of new labelled examples (no API key: the
shared secret `TUNEBRIDGE_WEBHOOK_SECRET` signs each body)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from backend.api.body import read_capped
from backend.api.deps import EngineDep, SettingsDep
from backend.services import webhooks as service
from backend.signing import verify_signature
from backend.training.data import DatasetError

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "/labelled-data",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Append signed labelled examples to a dataset; start training past the threshold",
    description='Body: `{"dataset": NAME, "examples": [record, ...]}`. Headers: '
    "`X-Tunebridge-Signature: sha256=<hex HMAC-SHA256 of the raw body>` and "
    "`X-Tunebridge-Delivery: <unique id>` (a repeated id stores nothing twice).",
)
async def labelled_data(request: Request, engine: EngineDep, settings: SettingsDep):
    if not settings.webhook_secret:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the labelled-data webhook is off: set TUNEBRIDGE_WEBHOOK_SECRET on the service",
        )
    body = await read_capped(request, limit_bytes=int(settings.max_body_mb * 1024 * 1024))
    verify_signature(body=body, header=request.headers.get("x-tunebridge-signature"), secret=settings.webhook_secret)
    try:
        outcome = service.receive(
            engine=engine,
            data_dir=settings.data_dir,
            body=body,
            delivery_id=request.headers.get("x-tunebridge-delivery", ""),
            threshold=settings.train_threshold,
            max_dataset_bytes=int(settings.max_dataset_mb * 1024 * 1024),
        )
    except DatasetError as exc:  # the examples at fault, each with its problem
        issues = [{"where": f"examples[{i.line - 1}]", "problem": i.message} for i in exc.issues]
        return JSONResponse(
            {"error": str(exc).split("\n")[0], "issues": issues}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    return JSONResponse(outcome, status_code=status.HTTP_200_OK if outcome["duplicate"] else status.HTTP_202_ACCEPTED)
