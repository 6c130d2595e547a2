"""No lost money, no double work (docs/PROTOCOL.md section 4): CreateOS failing at each step of a
deploy, after a real payment on anvil. Credits stay, the retry without payment headers succeeds, and
exactly one project (with one deployment) exists upstream afterwards."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.clock import ManualClock
from devstack.simulator.server import CreateOSSimulator
from gateway.deploy.attempts import Step
from gateway.errors import Unavailable
from tests.deploy_support import (
    CREATE,
    ONE_USD,
    UPLOAD_FILES,
    deploy,
    deploy_body,
    files_upload,
    signed,
)
from tests.payment_support import pay
from tests.support import Gateway

FIND = r"/v1/projects"
LIST_DEPLOYMENTS = r"/v1/projects/[^/]+/deployments"


def live_projects(sim: CreateOSSimulator) -> list[str]:
    return [p.id for p in sim.projects() if p.status != "deleted"]


async def paid_failure(
    gw: Gateway, arbitrum: AnvilNode, agent: LocalAccount, name: str
) -> dict[str, object]:
    """Pay 0.50 USD and deploy; the caller has arranged for CreateOS to fail. Returns the body."""
    tx = pay(arbitrum, agent, 500_000)
    response = await deploy(gw, agent, deploy_body(name), X_Payment_Tx=tx)
    assert response.status_code == 502, response.text
    body: dict[str, object] = response.json()
    assert body["error"] == (
        "Upstream failed; your payment is credited (balance $0.50). Retry without payment headers."
    )
    assert body["balance_usd"] == 0.5 and body["credited_usd"] == 0.5
    assert body["code"] == "upstream_failed"
    assert "simulated" not in response.text  # never the upstream's own message
    assert await gw.balance(agent.address) == 500_000
    again = await deploy(gw, agent, deploy_body(name), X_Payment_Tx=tx)
    assert again.status_code == 409  # the tx is spent: credits, not a second payment
    assert again.json()["error"] == "Payment already processed"
    return body


async def retry_succeeds(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, name: str
) -> str:
    response = await deploy(gw, agent, deploy_body(name))
    assert response.status_code == 200, response.text
    project_id: str = response.json()["projectId"]
    assert live_projects(sim) == [project_id]
    [project] = [p for p in sim.projects() if p.id == project_id]
    assert [d.id for d in project.deployments] == [response.json()["deploymentId"]]
    assert await gw.services.ownership.get(project_id) is not None
    assert await gw.services.deploys._attempts.load(agent.address, name) is None
    return project_id


async def test_create_fails_after_payment(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    sim.fail_next("POST", CREATE, status=500)
    await paid_failure(gw, arbitrum, agent, "create-fails")
    assert live_projects(sim) == []
    await retry_succeeds(gw, sim, agent, "create-fails")


async def test_create_refused_leaves_nothing_and_frees_the_name(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    sim.fail_next("POST", CREATE, status=400)
    await paid_failure(gw, arbitrum, agent, "create-refused")
    assert live_projects(sim) == []
    assert await gw.services.deploys._names.owner("create-refused") is None
    assert await gw.services.deploys._attempts.load(agent.address, "create-refused") is None
    await retry_succeeds(gw, sim, agent, "create-refused")


async def test_create_applied_but_answered_500_is_adopted_at_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    sim.fail_after_apply("POST", CREATE, status=500)
    await retry_succeeds(gw, sim, agent, "half-created")


async def test_connection_dropped_after_create_is_adopted_at_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    sim.drop_after_apply("POST", CREATE)
    await retry_succeeds(gw, sim, agent, "dropped-create")


async def test_ambiguous_create_that_cannot_be_read_back_is_adopted_by_the_retry(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    sim.fail_after_apply("POST", CREATE, status=503)
    sim.fail_next("GET", FIND, status=500, times=3)  # the client retries reads 3 times
    await paid_failure(gw, arbitrum, agent, "unreadable")
    assert len(live_projects(sim)) == 1  # made, not yet adopted
    attempt = await gw.services.deploys._attempts.load(agent.address, "unreadable")
    assert attempt is not None and attempt.step is Step.CREATING
    await retry_succeeds(gw, sim, agent, "unreadable")


async def test_upload_fails_after_payment_and_the_retry_reuses_the_project(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    sim.fail_next("PUT", UPLOAD_FILES, status=500)
    await paid_failure(gw, arbitrum, agent, "upload-fails")
    [half_made] = live_projects(sim)
    attempt = await gw.services.deploys._attempts.load(agent.address, "upload-fails")
    assert attempt is not None and attempt.project_id == half_made
    assert await retry_succeeds(gw, sim, agent, "upload-fails") == half_made
    assert [r.path for r in sim.requests if r.method == "POST" and r.path == "/v1/projects"] == [
        "/v1/projects"
    ]


async def test_upload_refused_rolls_back_to_created(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    sim.fail_next("PUT", UPLOAD_FILES, status=422)
    response = await deploy(gw, agent, deploy_body("upload-refused"))
    assert response.status_code == 502
    assert response.json()["error"] == (
        "Upstream failed; nothing was charged (balance $1.00). Retry the same request."
    )
    attempt = await gw.services.deploys._attempts.load(agent.address, "upload-refused")
    assert attempt is not None and attempt.step is Step.CREATED
    await retry_succeeds(gw, sim, agent, "upload-refused")


@pytest.mark.parametrize("fault", ["fail_after_apply", "drop_after_apply"])
async def test_upload_applied_but_failed_is_adopted_at_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, fault: str
) -> None:
    await gw.credit(agent.address, ONE_USD)
    getattr(sim, fault)("PUT", UPLOAD_FILES)
    await retry_succeeds(gw, sim, agent, f"up-{fault.replace('_', '-')}")


async def test_ambiguous_upload_that_cannot_be_listed_is_adopted_by_the_retry(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    sim.fail_after_apply("PUT", UPLOAD_FILES, status=504)
    sim.fail_next("GET", LIST_DEPLOYMENTS, status=500, times=3)
    await paid_failure(gw, arbitrum, agent, "unlisted")
    [project] = sim.projects()
    assert len(project.deployments) == 1  # uploaded, not yet adopted
    await retry_succeeds(gw, sim, agent, "unlisted")
    assert sum(1 for r in sim.requests if r.method == "PUT") == 1  # never uploaded twice


async def test_upstream_throttling_is_503_with_retry_after(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    sim.fail_next("POST", CREATE, status=429, retry_after=120)
    response = await deploy(gw, agent, deploy_body("throttled"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "120"
    assert response.json()["code"] == "upstream_busy"
    assert response.json()["balance_usd"] == 1
    await retry_succeeds(gw, sim, agent, "throttled")


async def test_project_that_cannot_be_recorded_is_deleted_again(
    gw: Gateway, sim: CreateOSSimulator, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    """Storage failing right after the create: the project would be an orphan, so it goes."""
    await gw.credit(agent.address, ONE_USD)
    attempts = gw.services.deploys._attempts
    real_record = attempts.record

    async def failing_record(*args: object, **kwargs: object) -> None:
        if kwargs.get("project_id"):  # the write that names the new project
            raise Unavailable("Storage unavailable", internal="simulated outage")  # as Store raises
        await real_record(*args, **kwargs)  # type: ignore[arg-type]

    attempts.record = failing_record  # type: ignore[method-assign]
    try:
        response = await deploy(gw, agent, deploy_body("unrecordable"))
    finally:
        attempts.record = real_record  # type: ignore[method-assign]
    assert response.status_code == 503
    [project] = sim.projects()
    assert project.status == "deleting"
    sim_clock.advance(5)
    assert live_projects(sim) == []


async def storage_outage(*args: object, **kwargs: object) -> None:
    """Stands in for a storage write that fails (as ``Store`` raises it)."""
    raise Unavailable("Storage unavailable", internal="simulated outage")


async def test_a_project_record_lost_after_the_upload_is_finished_by_the_retry(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A successful upload is not written down: the record of the project comes next, and when
    storage fails there, the attempt's "uploading" makes the retry find the deployment by
    listing, so nothing is uploaded twice."""
    await gw.credit(agent.address, ONE_USD)
    with monkeypatch.context() as patched:
        patched.setattr(gw.services.deploys._ownership, "record_project", storage_outage)
        response = await deploy(gw, agent, deploy_body("record-lost"))
    assert response.status_code == 503
    attempt = await gw.services.deploys._attempts.load(agent.address, "record-lost")
    assert attempt is not None and attempt.step is Step.UPLOADING and attempt.project_id
    await retry_succeeds(gw, sim, agent, "record-lost")
    assert sum(1 for r in sim.requests if r.method == "PUT") == 1
    assert [r.method for r in sim.requests if r.path.endswith("/deployments")] == ["GET"]


async def test_a_deploy_cut_before_its_upload_was_sent_uploads_on_the_retry(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project is recorded with its upload announced in one write; a process that dies
    before sending the upload leaves "uploading", and the retry lists, finds no deployment of
    its own and uploads once. (The crash is stood in for by an error the flow does not
    handle, raised where the upload would be sent.)"""
    await gw.credit(agent.address, ONE_USD)

    async def dying_upload(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the process died before sending the upload")

    with monkeypatch.context() as patched:
        patched.setattr(gw.services.deploys._upstream, "upload_files_base64", dying_upload)
        response = await deploy(gw, agent, deploy_body("cut-before-upload"))
    assert response.status_code == 500
    attempt = await gw.services.deploys._attempts.load(agent.address, "cut-before-upload")
    assert attempt is not None and attempt.step is Step.UPLOADING
    [project] = sim.projects()
    assert attempt.project_id == project.id and not project.deployments
    assert await retry_succeeds(gw, sim, agent, "cut-before-upload") == project.id
    assert sum(1 for r in sim.requests if r.method == "PUT") == 1


async def test_a_redeploy_whose_deployment_was_not_recorded_is_finished_by_the_retry(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for new code into an owned project: the retry adopts the deployment that is
    not among the project's deployments from before, and uploads nothing more."""
    await gw.credit(agent.address, 2 * ONE_USD)
    first = (await deploy(gw, agent, deploy_body("redeploy-lost"))).json()
    project_id = first["projectId"]

    def redeploy() -> Awaitable[httpx.Response]:
        return gw.client.post(
            f"/agent/projects/{project_id}/deploy",
            json={"upload": files_upload({"index.js": b"v2"})},
            headers=signed(agent),
        )

    with monkeypatch.context() as patched:
        patched.setattr(gw.services.deploys._ownership, "add_deployment", storage_outage)
        assert (await redeploy()).status_code == 503
    retried = await redeploy()
    assert retried.status_code == 200, retried.text
    [project] = sim.projects()
    assert [d.id for d in project.deployments][-1] == retried.json()["deploymentId"]
    assert len(project.deployments) == 2  # the first deploy's and the one redeploy's
    record = await gw.services.ownership.get(project_id)
    assert record is not None
    assert record.deployments == (first["deploymentId"], retried.json()["deploymentId"])
