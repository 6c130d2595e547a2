"""The whole URL surface on one screen."""

from __future__ import annotations

from starlette.routing import Route

from gateway.web import (
    admin,
    credits,
    deploy,
    deployments,
    discovery,
    metrics,
    openapi,
    projects,
    public,
)

routes = [
    # public
    Route("/health", public.health, methods=["GET"]),
    Route("/health/ready", public.ready, methods=["GET"]),
    Route("/openapi.json", openapi.document, methods=["GET"]),
    Route("/llms.txt", discovery.llms_txt, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/agent/chains", public.chains, methods=["GET"]),
    Route("/agent/recipients", public.recipients, methods=["GET"]),
    Route("/agent/receipts", public.receipts, methods=["GET"]),
    Route("/agent/balance/{address}", public.balance, methods=["GET"]),
    # authenticated (wallet signature)
    Route("/agent/credits", credits.credits, methods=["GET"]),
    Route("/agent/credits/topup", credits.topup, methods=["POST"]),
    Route("/agent/deploy", deploy.deploy, methods=["POST"]),
    Route("/agent/deploy/{projectId}/{deploymentId}/status", deployments.status, methods=["GET"]),
    Route("/agent/deploy/{projectId}/{deploymentId}/logs", deployments.logs, methods=["GET"]),
    Route("/agent/projects", projects.list_projects, methods=["GET"]),
    Route("/agent/projects/{projectId}", projects.delete_project, methods=["DELETE"]),
    Route("/agent/projects/{projectId}/deploy", deploy.redeploy, methods=["POST"]),
    # operator (Bearer GATEWAY_ADMIN_TOKEN; 404 when unset)
    Route("/admin/wallets/{address}", admin.wallet, methods=["GET"]),
    Route("/admin/wallets/{address}/adjust", admin.adjust, methods=["POST"]),
    Route("/admin/payments/{chain}/{txHash}", admin.payment, methods=["GET"]),
]
