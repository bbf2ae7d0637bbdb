"""The console in a real browser: Debian's headless Chromium, driven through Debian's chromedriver.

A person logs in through a real OIDC issuer (Authlib's server on loopback), watches rollouts move on
the list without reloading, watches a step's evidence plot grow look by look, aborts one (its rollback
lands in a real git remote with their name in the `Reason:` trailer), retries one whose step failed,
approves a gated one, reads the notifications delivered (to a real HTTP endpoint through apprise),
and, as a viewer, is refused. The controller is the service `controller serve` runs, on uvicorn, over
the real local runner; only what the analysis step answers is scripted (no Prometheus traffic here:
each look's figures are made up, the same every run), while commits go to a real git remote.

Set CANARYFLOW_CONSOLE_SCREENSHOTS=<dir> to keep the screenshots the docs show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.apprise_channel import AppriseChannel
from canaryflow.app.wiring import assemble_controller
from canaryflow.kernel.types import CheckEvidence, Verdict
from controller.auth.settings import AuthSettings, OidcSettings, RoleGrant
from controller.console.settings import ConsoleSettings
from controller.controller_settings import ControllerSettings
from controller.notice_log import NoticeLog
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from tests.controller.harness import Steps, policy
from tests.controller.live import LiveController, wait_for
from tests.notify.receiver import Receiver
from tests.support.oidc_issuer import PASSWORD, OidcIssuer
from workflows.local.runner import LocalRunner
from workflows.steps.base import StepOutcome

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
_MISSING = (
    "Debian's chromium and chromium-driver are not installed "
    "(make test installs them as root: apt-get install -y chromium chromium-driver)"
)
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    if os.environ.get("CI") == "true":  # as with Prometheus: in CI a missing browser is a failure
        raise RuntimeError(f"the console's browser test needs Chromium in CI: {_MISSING}")
    pytest.skip(_MISSING, allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (a dev dependency) is not installed")
By = pytest.importorskip("selenium.webdriver.common.by").By


def scripted_verdict(looks: int, decision: str) -> str:
    """A step's verdict after `looks` looks, with the evidence the console plots: a canary 3% slower
    whose bounds narrow look by look (for "rollback": 40% slower, its lower bound past the tolerance)."""
    worse = 0.4 if decision == "rollback" else 0.03
    width = [0.45 / (i + 1) ** 0.5 for i in range(looks)]
    evidence = CheckEvidence(
        metric="latency_p99", kind="latency", tolerance=0.1, alternative=0.25,
        elapsed_s=[15.0 * (i + 1) for i in range(looks)], estimate=[worse] * looks,
        lower=[round(worse - w, 4) for w in width], upper=[round(worse + w, 4) for w in width],
    )  # fmt: skip
    verdict = "fail" if decision == "rollback" else "pass" if decision == "promote" else "inconclusive"
    return Verdict(
        decision=decision,
        decided_at_s=None if decision == "inconclusive" else 15.0 * looks,
        checks=[{"metric": "latency_p99", "verdict": verdict, "reason": f"latency p99 {worse:+.0%}"}],
        evidence=[evidence],
    ).model_dump_json()


class RealCommits(Steps):
    """Scripted analysis per rollout; the commit, promote and rollback nodes commit to a real remote.

    An analysis listed in `held` keeps collecting samples until the test releases it, one in `failing`
    fails until released: the browser must see each step however slowly it starts and logs in (a timed
    script raced a loaded CI runner). Each answer is one more look of evidence.
    """

    def __init__(self, repo: GitRepo, held: set[str], failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.repo, self.held, self.failing = repo, held, set(failing)
        self.looks: dict[str, int] = {}

    def release(self, key: str) -> None:
        self.held.discard(key)
        self.failing.discard(key)

    def __call__(self, node, step_input):
        spec = step_input.spec
        if node.step == "analyze":
            key = f"{spec.rollout_id}/{node.id}"
            self.looks[key] = looks = self.looks.get(key, 0) + 1
            if key in self.failing:
                self.looks[key] = 0  # a retried step starts its looks again
                return StepOutcome(state="failed", outputs={"verdict": "fail",
                                   "verdict_json": scripted_verdict(looks, "rollback")},
                                   message="latency_p99: canary slower by 40%")  # fmt: skip
            if key in self.held:
                running = {"verdict_json": scripted_verdict(looks, "inconclusive")}
                return StepOutcome(state="running", outputs=running, message="collecting samples")
            return StepOutcome(state="succeeded", outputs={"verdict": "pass",
                               "verdict_json": scripted_verdict(looks, "promote")})  # fmt: skip
        outcome = super().__call__(node, step_input)
        if node.step == "set-weight":
            result = self.repo.commit_step(spec, int(node.params["weight"]), "canary")
        elif node.id == "promote":
            result = self.repo.commit_step(spec, 100, "promote")
        elif node.id == "rollback":
            result = self.repo.rollback(spec, step_input.reason)
        else:
            return outcome
        outcome.outputs["commit_sha"] = result.sha or ""
        return outcome


@pytest.fixture
def world(tmp_path, git_remote):
    pols = {"fast": policy(5, 50), "gated": policy(5, approval=True)}
    repo = GitRepo(GitOpsSettings(remote_url=str(git_remote), workdir=tmp_path / "work"))
    steps = RealCommits(
        repo,
        {
            "minilm-v2-watch/analyze-5",  # released by the test once the browser has seen the step
            "minilm-v2-watch/analyze-50",
            "bert-v7-abort/analyze-5",  # never decides: a person must
            "bert-v8-viewer/analyze-5",
        },
        failing={"ranker-v4-retry/analyze-50"},  # until the person retries it
    )
    receiver = Receiver()  # where the notifications go (an apprise JSON endpoint)
    notice_log = NoticeLog(tmp_path / "c.db")
    notifier = BackgroundNotifier(
        [AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hook")], on_settled=notice_log.record
    )
    issuer = OidcIssuer(
        "http://placeholder/auth/callback", users={"alice": ["ml-ops"], "victor": ["watchers"]}
    )
    auth = AuthSettings(
        oidc=OidcSettings(
            issuer=issuer.url, client_id=issuer.client_id, client_secret=SecretStr(issuer.client_secret)
        ),
        roles=[RoleGrant(subject="ml-ops", role="operator"), RoleGrant(subject="watchers", role="viewer")],
        cookie_secure=False,  # plain http on loopback
    )
    settings = ControllerSettings(
        db_path=tmp_path / "c.db",
        reconcile_interval_s=0.25,
        auth=auth,
        console=ConsoleSettings(refresh_s=0.5, commit_url="https://github.com/org/gitops/commit/{sha}"),
    )
    store = RolloutStore(settings.db_path)
    runner = LocalRunner(settings.db_path, steps, lambda name: pols[name])
    service = assemble_controller(
        settings, store, runner, None, policy_loader=lambda name: pols[name], notifier=notifier,
        notice_log=notice_log,
    )  # fmt: skip
    live = LiveController(service)
    issuer.client.redirect_uri = f"{live.url}/auth/callback"
    try:
        with issuer, live:
            yield live, store, git_remote, steps
    finally:
        notifier.close(1)
        receiver.stop()


def add(store: RolloutStore, rid: str, model: str, pol: str) -> None:
    now = time.time()
    store.create_rollout(
        RolloutRecord(
            id=rid, model=model, baseline_version="1", canary_version=rid.split("-")[1][1:], policy=pol,
            created_at=now, updated_at=now, reason="alias challenger set",
        )
    )  # fmt: skip


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="cf-chromium-")
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    return driver, profile


def until(driver, condition, timeout_s: float = 40.0, what: str = "the page"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception:  # an element swapped by the live refresh mid-read: look again
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {driver.current_url}\n{driver.page_source[:2000]}")


def log_in(driver, base: str, user: str) -> None:
    by = By
    driver.get(f"{base}/console")
    until(driver, lambda d: d.find_element(by.ID, "username"), what="the issuer's sign-in form")
    driver.find_element(by.ID, "username").send_keys(user)
    driver.find_element(by.ID, "password").send_keys(PASSWORD)
    driver.find_element(by.ID, "sign-in").click()
    until(driver, lambda d: d.current_url.startswith(f"{base}/console"), what="the console after login")


def tall_screenshot(driver, path: Path) -> None:
    """The whole page, not only the window (the notifications and actions are below the fold)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(4000, height + 40))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


def delivered(driver) -> str:
    return " ".join(r.text for r in driver.find_elements(By.CSS_SELECTOR, "tr.sent-delivered"))


def looks_of(driver) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, "svg.evidence-plot").get_attribute("data-looks"))


def phase_on_list(driver, rid: str) -> str:
    by = By
    return driver.find_element(by.CSS_SELECTOR, f'tr[data-rollout="{rid}"] .phase').text


def test_console_in_chromium(world):
    live, store, remote, steps = world
    by = By
    shots = os.environ.get("CANARYFLOW_CONSOLE_SCREENSHOTS")
    add(store, "minilm-v2-watch", "minilm", "fast")
    driver, profile = browser()
    try:
        log_in(driver, live.url, "alice")
        # The list follows the rollout without a reload: canary at 5%, then 50%, then promoted.
        until(driver, lambda d: phase_on_list(d, "minilm-v2-watch") == "canary", what="canary")
        marker = driver.execute_script("return window.__marker = 'same page'")
        row = 'tr[data-rollout="minilm-v2-watch"]'
        until(driver, lambda d: "5%" in d.find_element(by.CSS_SELECTOR, row).text, what="the 5% step")
        steps.release("minilm-v2-watch/analyze-5")
        until(driver, lambda d: "50%" in d.find_element(by.CSS_SELECTOR, row).text, what="the 50% step")
        steps.release("minilm-v2-watch/analyze-50")
        until(
            driver,
            lambda d: phase_on_list(d, "minilm-v2-watch") == "promoted",
            timeout_s=45,
            what="promotion",
        )
        assert driver.execute_script("return window.__marker") == marker  # never reloaded

        # Abort a canary that cannot decide: confirmation, reason, then the rollback commit.
        add(store, "bert-v7-abort", "bert", "fast")
        until(driver, lambda d: phase_on_list(d, "bert-v7-abort") == "canary", what="the second canary")
        driver.get(f"{live.url}/console/rollouts/bert-v7-abort")
        # Its evidence plot grows look by look without a reload: estimate, bounds, tolerance.
        looks = until(driver, lambda d: looks_of(d) >= 2 and looks_of(d), what="the evidence plot")
        marker = driver.execute_script("return window.__marker = 'rollout page'")
        until(driver, lambda d: looks_of(d) > looks, what="the plot's next look")
        assert driver.execute_script("return window.__marker") == marker
        plot = driver.find_element(by.CSS_SELECTOR, "svg.evidence-plot")
        assert plot.get_attribute("data-metric") == "latency_p99"
        assert plot.find_elements(
            by.CSS_SELECTOR, "line.threshold-tolerance, polygon.bounds, polyline.estimate"
        )
        driver.find_element(by.CSS_SELECTOR, "#act-abort").find_element(by.XPATH, "..").find_element(
            by.NAME, "reason"
        ).send_keys("p99 regression seen on the dashboard")
        driver.find_element(by.ID, "act-abort").click()
        until(driver, lambda d: d.switch_to.alert, what="the confirmation").accept()
        until(driver, lambda d: d.find_element(by.ID, "done"), what="the action recorded")
        until(driver, lambda d: d.find_element(by.ID, "phase").text == "rolled_back", timeout_s=45,
              what="the rollback")  # fmt: skip
        commits = until(
            driver,
            lambda d: [
                a for a in d.find_elements(by.CSS_SELECTOR, ".commits li") if a.text.startswith("rollback:")
            ],
            what="the rollback commit",
        )
        sha = commits[0].find_element(by.TAG_NAME, "a").get_attribute("href").rsplit("/", 1)[1]
        message = subprocess.run(
            ["git", "--git-dir", str(remote), "log", "-1", "--format=%B", sha],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "Reason:" in message and "aborted by alice: p99 regression seen on the dashboard" in message
        if shots:
            tall_screenshot(driver, Path(shots) / "console-rollout.png")

        # Retry a step that failed: it runs again from its commit, in the same rollout, and goes on.
        add(store, "ranker-v4-retry", "ranker", "fast")
        driver.get(f"{live.url}/console/rollouts/ranker-v4-retry")
        until(driver, lambda d: d.find_element(by.ID, "phase").text == "rolled_back", timeout_s=45,
              what="the failed step's rollback")  # fmt: skip
        steps.release("ranker-v4-retry/analyze-50")  # the noisy neighbour is gone
        driver.refresh()
        driver.find_element(by.CSS_SELECTOR, "#act-retry").find_element(by.XPATH, "..").find_element(
            by.NAME, "reason"
        ).send_keys("the noisy neighbour is gone")
        driver.find_element(by.ID, "act-retry").click()
        until(driver, lambda d: d.switch_to.alert, what="the confirmation").accept()
        until(driver, lambda d: d.find_element(by.ID, "phase").text == "promoted", timeout_s=45,
              what="the retried rollout's promotion")  # fmt: skip
        history = driver.find_element(by.CSS_SELECTOR, "table.history").text
        assert "step 1 retried by alice: the noisy neighbour is gone: canary at 50% again" in history
        assert [r.id for r in store.rollouts(model="ranker")] == ["ranker-v4-retry"]  # no new rollout
        # The notifications delivered for it, as the notifier reported each one.
        texts = until(
            driver, lambda d: "promoted" in delivered(d) and delivered(d), what="the promotion's notice"
        )
        assert "rolled_back" in texts and "json://" in texts
        if shots:
            tall_screenshot(driver, Path(shots) / "console-retried.png")

        # Approve a gated rollout from its page.
        add(store, "minilm-v3-gated", "minilm", "gated")
        driver.get(f"{live.url}/console/rollouts/minilm-v3-gated")
        until(driver, lambda d: d.find_element(by.ID, "phase").text == "awaiting_approval", what="the gate")
        driver.refresh()  # the buttons follow the phase on a fresh page
        driver.find_element(by.ID, "act-approve").click()
        until(driver, lambda d: d.switch_to.alert, what="the confirmation").accept()
        until(driver, lambda d: d.find_element(by.ID, "phase").text == "promoted", timeout_s=45,
              what="the approved promotion")  # fmt: skip
        assert any(t.reason == "approved by alice" for t in store.detail("minilm-v3-gated").transitions)
        if shots:
            add(store, "bert-v8-viewer", "bert", "fast")
            driver.get(f"{live.url}/console")
            until(driver, lambda d: phase_on_list(d, "bert-v8-viewer") == "canary", what="the list")
            driver.save_screenshot(str(Path(shots) / "console-list.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    # A viewer sees the pages but no buttons, and the action itself is refused.
    if store.get("bert-v8-viewer") is None:
        add(store, "bert-v8-viewer", "bert", "fast")
    driver, profile = browser()
    try:
        log_in(driver, live.url, "victor")
        wait_for(lambda: store.get("bert-v8-viewer").phase == "canary", what="a canary to act on")
        driver.get(f"{live.url}/console/rollouts/bert-v8-viewer")
        assert driver.find_elements(by.CSS_SELECTOR, "button.act") == []
        status = driver.execute_script(
            """const body = new URLSearchParams({kind: 'abort', reason: 'try', action_id: 'viewer-abort-1',
                 csrf_token: document.body.dataset.csrf});
               const r = await fetch('/console/rollouts/bert-v8-viewer/actions', {method: 'POST', body});
               return [r.status, await r.text()];"""
        )
        assert status[0] == 403 and "victor has no operator role" in status[1]
        assert store.get("bert-v8-viewer").phase == "canary"
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
