"""deploy of a name another source holds: a new service, and it says so."""

from __future__ import annotations


def test_deploy_of_a_name_from_the_services_file_says_it_made_a_new_service(maestro):
    # `deploy --name web` of a web from services.yml made web-1 beside it without a word: the
    # operator believed web redeployed.
    src = maestro.source("web")
    spec = maestro.root / "services.yaml"
    spec.write_text(f"- {{name: web, repo: {src}}}\n")
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running(["web"])
    out = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "web")
    assert out.stdout.startswith("deployed web-1: "), out.stdout
    assert (f"note: web comes from {spec}#1 (change it there and run deploy-from-env); "
            "this deploy is a new service, web-1") in out.stderr, out.stderr
    again = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "web-1")
    assert again.stdout.startswith("deployed web-1: ") and "note:" not in again.stderr  # a redeploy
