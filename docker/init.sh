#!/usr/bin/env bash
# One-shot set-up of the stack (the airflow-init service): metadata DB, the admin's password, region check.
# Safe to re-run: every step is idempotent.
set -euo pipefail

echo "phone-sync init: migrating the metadata database"
airflow db migrate

# Simple auth manager: users come from AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS, passwords from this file.
# Without AIRFLOW_ADMIN_PASSWORD the api-server generates one and prints it in its log once.
passwords="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-/opt/airflow/auth/passwords.json}"
mkdir -p "$(dirname "$passwords")"
if [[ -n "${AIRFLOW_ADMIN_PASSWORD:-}" ]]; then
  python - "$passwords" <<'PY'
import json, os, sys
user = os.environ.get("AIRFLOW_ADMIN_USER", "admin")
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, out)
PY
  echo "phone-sync init: password set for user ${AIRFLOW_ADMIN_USER:-admin}"
else
  echo "phone-sync init: AIRFLOW_ADMIN_PASSWORD not set; see the airflow-apiserver log for a generated password"
fi

# Every region's FHIR and Google connection, and the PHI key, must be there before the first run: exit status 3
# (a region that cannot run) stops the stack here, naming each one; an invalid region file only warns (it shows
# as its config-error DAG and stops no other region). Names only: the check never prints a connection's content.
echo "phone-sync init: checking region files, their connections and the PHI key"
status=0
phone-sync-check-regions --offline --connections || status=$?
if [[ $status -eq 3 ]]; then
  echo "phone-sync init: FAILED: define the connections named above (.env, see docker/.env.example), then docker compose up -d" >&2
  exit 1
elif [[ $status -ne 0 ]]; then
  echo "phone-sync init: some region files are invalid (they show as config-error DAGs)"
fi
