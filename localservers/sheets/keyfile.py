"""A throwaway service-account key whose ``token_uri`` is the emulator, for tests and the demo.

``python -m localservers.sheets.keyfile --token-uri http://127.0.0.1:8601/token`` prints the JSON
to put in the Google connection's ``keyfile_dict`` extra. The key is generated on the spot and
is worthless anywhere but the emulator (which does not verify signatures).
"""

from __future__ import annotations

import argparse
import json
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEMO_EMAIL = "phone-sync-demo@emulator.iam.gserviceaccount.com"


def demo_keyfile(token_uri: str, client_email: str = DEMO_EMAIL) -> dict[str, str]:
    """A service-account key file dict google-auth accepts, pointing at ``token_uri``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "phone-sync-emulator",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": token_uri,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token-uri", required=True, help="the emulator's token endpoint, <base>/token")
    parser.add_argument("--email", default=DEMO_EMAIL)
    args = parser.parse_args()
    print(json.dumps(demo_keyfile(args.token_uri, args.email)))


if __name__ == "__main__":
    main()
