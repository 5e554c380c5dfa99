"""Secrets for docker-compose.yml: generated on first start, kept in the `secrets` volume.

    python compose_secrets.py generate DIR           # the secrets-init service
    python compose_secrets.py exec DIR -- CMD [ARG]  # entrypoint of every Airflow service

`generate` writes each secret DIR does not hold yet: the host's value when its variable
is set (NEWS_DB_PASSWORD, AIRFLOW_FERNET_KEY, AIRFLOW_JWT_SECRET), else a random one.
A secret already written is kept, since the databases were created with it and the Fernet
key encrypts what Airflow stored; a different host value is reported and ignored
(`docker compose down -v` starts over, data included).

`exec` replaces `{secret:NAME}` in the environment with the secret (percent-encoded in
a URL, so a password may hold any character), then runs CMD in its place.

Standard library only: it runs in the project image before Airflow starts.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote

AIRFLOW_UID, ROOT_GID = 50000, 0  # the official image's user; group 0 reads, as in that image


def _token() -> str:
    return secrets.token_urlsafe(32)


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


# name: (host variable that may provide it, generator)
SECRETS: dict[str, tuple[str | None, Callable[[], str]]] = {
    "news_db_password": ("NEWS_DB_PASSWORD", _token),
    "metadata_db_password": (None, _token),
    "fernet_key": ("AIRFLOW_FERNET_KEY", _fernet_key),
    "jwt_secret": ("AIRFLOW_JWT_SECRET", _token),
    "api_secret_key": (None, _token),  # signs log requests between api-server and workers
}
PLACEHOLDER = re.compile(r"\{secret:([a-z_]+)\}")


class SecretError(Exception):
    pass


def generate(directory: Path, environ: Mapping[str, str]) -> list[str]:
    """Write the missing secrets; return the notes to print (never a secret's value)."""
    directory.mkdir(parents=True, exist_ok=True)
    notes = []
    for name, (variable, make) in SECRETS.items():
        path = directory / name
        given = environ.get(variable or "", "")
        if path.exists():
            if given and given != path.read_text():
                notes.append(f"{variable} differs from the {name} set on first start: kept the "
                             "first (docker compose down -v to start over)")
            continue
        _write(path, given or make())
        notes.append(f"{name}: {'from ' + variable if given else 'generated'}")
    return notes


def _write(path: Path, value: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(value)
    temporary.chmod(0o440)
    if os.geteuid() == 0:
        os.chown(temporary, AIRFLOW_UID, ROOT_GID)
    temporary.replace(path)


def fill_in(environ: Mapping[str, str], directory: Path) -> dict[str, str]:
    """The environment with every `{secret:NAME}` replaced by the secret's value."""
    def value(name: str, in_url: bool) -> str:
        if name not in SECRETS:
            raise SecretError(f"unknown secret {{secret:{name}}}; known: {', '.join(SECRETS)}")
        path = directory / name
        if not path.exists():
            raise SecretError(f"{path} is missing: the secrets-init service writes it "
                              "(docker compose up runs it first)")
        secret = path.read_text()
        return quote(secret, safe="") if in_url else secret

    return {key: PLACEHOLDER.sub(lambda m: value(m.group(1), "://" in text), text)
            for key, text in environ.items()}


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "generate":
        for note in generate(Path(argv[1]), os.environ):
            print(f"secrets: {note}", file=sys.stderr)
        return 0
    if len(argv) >= 4 and argv[0] == "exec" and argv[2] == "--":
        try:
            environ = fill_in(os.environ, Path(argv[1]))
        except SecretError as exc:
            print(f"secrets: {exc}", file=sys.stderr)
            return 2
        os.execvpe(argv[3], argv[3:], environ)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
