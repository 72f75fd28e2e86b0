"""A warehouse in Azure Blob Storage or ADLS Gen2, read through a local cache. Read-only for
now: `amlwh query` and `views` read one; the writers need a local folder.

`[warehouse] path` is `abfs://<container>/<prefix>` (or `abfss://`, `az://`; with
`<container>@<account>.dfs.core.windows.net` as the host, the URL names the account too).
Credentials are named as [checkpoint]'s: `[warehouse] connection_string` (an account key
or a SAS, a secret), else `[warehouse] account_url` (or the account the URL names) with an
Azure AD token from DefaultAzureCredential, `[identity] client_id` picking a user-assigned
identity.

Every read lists the warehouse afresh: the listing is what must be fresh, since files come
and go (commits, compactions) but are never changed in place. The files a query needs are
then downloaded into the cache unless it holds them already, each exactly as listed (its
ETag is a condition of the download), and read from a folder of the query's own
(blob_cache.py). A file deleted or replaced between the listing and its download makes the
read start again on a new listing, as a local query does when a compaction deletes a file
it listed (query/connection.py).

The blob SDK (azure-storage-blob), not pyarrow's AzureFileSystem or adlfs: it takes the
connection strings and the Azure AD identity the rest of amlwh uses, lists ETags, and
downloads on a condition; the files are then plain local files for DuckDB. (DuckDB
reading through `register_filesystem(adlfs)` took 3.2 s a query, its reads serialised on
the GIL; DuckDB's own azure extension cannot be installed here.)
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import quote

from consumer.clock import mono_s, wall_s
from consumer.errors import ConfigError, RemoteWarehouseError
from consumer.storage.blob_cache import BlobCache, BlobGone, RemoteFile, Snapshot

log = logging.getLogger("amlwh.remote")
T = TypeVar("T")

_URL = re.compile(r"(?:abfss?|az)://(?P<container>[^/@?#]+)(?:@(?P<host>[^/?#]*))?(?:/(?P<prefix>[^?#]*))?\Z",
                  re.IGNORECASE)
_CONTAINER = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(-[a-z0-9]+)*")  # Azure's container naming rules
_ATTEMPTS = 5  # listings, when files listed are deleted before their download (compaction)
WORKERS = 8  # parallel downloads: each mostly waits on the network, without the GIL
# The blob SDK's default retries keep a call against an unreachable account busy for ~80 s
# (15 s first back-off), and retry a refused token too: an operator waiting on a query
# hears of it in seconds instead.
CLIENT_OPTIONS = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1,
                  "connection_timeout": 10}
STORAGE_SCOPE = "https://storage.azure.com/.default"
# a full disk, a quota, a read-only or forbidden folder: said as the cache's, wherever they arise
_CACHE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


@dataclass(frozen=True)
class RemoteLocation:
    url: str
    container: str
    prefix: str  # without a leading or trailing "/"; "" for the container's root
    account: str | None  # when the URL's host names it

    @property
    def blob_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""


def parse_url(url: str) -> RemoteLocation:
    match = _URL.match(url)
    if match is None:
        raise ConfigError(
            f"[warehouse] path {url!r} is not a Blob Storage URL. Write abfs://<container>/<prefix> "
            "(or az://...), or abfss://<container>@<account>.dfs.core.windows.net/<prefix>")
    if not _CONTAINER.fullmatch(match["container"]):
        raise ConfigError(
            f"[warehouse] path {url!r} names the container {match['container']!r}, which Blob "
            "Storage does not allow: a container name is 3 to 63 lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit")
    host = match["host"] or ""
    return RemoteLocation(url, match["container"], (match["prefix"] or "").strip("/"),
                          host.split(".")[0] or None)


def open_remote(url: str, *, connection_string: str | None, account_url: str | None,
                client_id: str | None, cache_dir: Path, connection_verify: str | None = None,
                retries: int = CLIENT_OPTIONS["retry_total"]) -> RemoteWarehouse:
    """The warehouse at `url`, its files cached under `cache_dir`/<account>/<container>/<prefix>.
    `connection_verify`: a CA bundle for the endpoint's TLS certificate. Dials nothing yet."""
    location = parse_url(url)
    from azure.storage.blob import ContainerClient  # only for a remote warehouse: ~0.5 s to import

    credential = None
    transport = dict(CLIENT_OPTIONS, retry_total=retries,
                     **({"connection_verify": connection_verify} if connection_verify else {}))
    if connection_string:
        try:
            client = ContainerClient.from_connection_string(connection_string, location.container, **transport)
        except ValueError:  # its message is not repeated: it may quote the string
            raise ConfigError(
                "[warehouse] connection_string (AMLWH_WAREHOUSE__CONNECTION_STRING) is not a storage "
                "account connection string: copy one from the account's access keys or a SAS "
                "(BlobEndpoint=...;SharedAccessSignature=...), or unset it and set [warehouse] "
                "account_url to use Azure AD") from None
    else:
        endpoint = account_url or (location.account and f"https://{location.account}.blob.core.windows.net")
        if not endpoint:
            raise ConfigError(
                f"[warehouse] path {url} is in Blob Storage but no credential says which account: "
                "set AMLWH_WAREHOUSE__CONNECTION_STRING (a secret: an account key or a SAS), or "
                "[warehouse] account_url = \"https://<account>.blob.core.windows.net\" for Azure AD "
                "(managed identity, az login; see [identity])")
        from azure.identity import DefaultAzureCredential

        # a sync twin of eventhub/identity.py's: the query side has no event loop
        credential = (DefaultAzureCredential(managed_identity_client_id=client_id) if client_id
                      else DefaultAzureCredential())  # AZURE_CLIENT_ID, if set, picks the identity
        client = ContainerClient(endpoint, location.container, credential=credential, **transport)
    account = client.account_name or location.account or client.primary_hostname
    # the prefix as one folder name, so that one warehouse's cache never nests in another's
    cache = BlobCache(Path(cache_dir) / account / location.container / quote("/" + location.prefix, safe=""))
    return RemoteWarehouse(location, client, cache, credential, account)


class RemoteWarehouse:
    """A remote warehouse and its cache; close it (or use it as a context manager)."""

    def __init__(self, location: RemoteLocation, client, cache: BlobCache, credential, account: str) -> None:
        self.location = location
        self.client = client
        self.cache = cache
        self._credential = credential
        self._token_checked = False
        self.where = f"container {location.container} of account {account}"
        self.last: Snapshot | None = None  # the last read's snapshot, for its counts

    def __enter__(self) -> RemoteWarehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()
        if self._credential is not None:
            self._credential.close()

    def listing(self) -> dict[str, RemoteFile]:
        """Every blob under the prefix, by its path relative to it."""
        start = len(self.location.blob_prefix)
        with self._explained():
            if self._credential is not None and not self._token_checked:
                # once, before any request: inside one, a refusal would be retried
                with _quiet("azure.identity"):  # its warning says what the error below says
                    self._credential.get_token(STORAGE_SCOPE)
                self._token_checked = True
            return {blob.name[start:]: RemoteFile(blob.name[start:], blob.size, blob.etag)
                    for blob in self.client.list_blobs(name_starts_with=self.location.blob_prefix or None)}

    def read(self, work: Callable[[Snapshot], T]) -> T:
        """`work(snapshot)` on a fresh listing, `snapshot.fetch` getting the files it needs;
        again on a new listing when a file it listed was deleted or replaced before its
        download."""
        for attempt in range(_ATTEMPTS):
            started = mono_s()
            listed = self.listing()
            try:
                pruned = self.cache.prune(listed.values(), wall_s())
                snapshot = self.last = Snapshot(listed, self.cache, self._download, WORKERS)
            except OSError as exc:
                raise self._cache_error(exc) from None
            try:
                return work(snapshot)
            except OSError as exc:
                raise self._cache_error(exc) from None
            except BlobGone as exc:
                if attempt == _ATTEMPTS - 1:
                    raise RemoteWarehouseError(
                        f"{exc} in {self.where} was deleted or replaced before it could be read, "
                        f"{_ATTEMPTS} listings in a row: is something rewriting the warehouse in "
                        "place? Files of a warehouse are only ever added and deleted") from None
                log.debug("remote warehouse: %s went away since the listing; listing again", exc)
            finally:
                snapshot.close()
                log.debug("remote warehouse %s: %d file(s) listed, %d read, %d downloaded (%d bytes), "
                          "%d cache entries pruned, %.2f s", self.location.url, len(listed),
                          len(snapshot.files_read), snapshot.downloaded, snapshot.downloaded_bytes, pruned,
                          mono_s() - started)
        raise AssertionError("unreachable")

    def _cache_error(self, exc: OSError) -> Exception:
        """A failure to write the cache as the operator's error; any other OSError as it is."""
        root, name = str(self.cache.root), str(exc.filename or "")
        if exc.errno not in _CACHE_ERRNOS and not (name and (name.startswith(root) or root.startswith(name))):
            return exc  # not about the cache's folder, its files or its parents
        return RemoteWarehouseError(
            f"cannot keep files in the cache at {self.cache.root}: {exc.strerror or exc}. Set "
            "[warehouse] cache_dir (AMLWH_WAREHOUSE__CACHE_DIR) to a folder this user can write, "
            "with room for the tables queried")

    def _download(self, file: RemoteFile, out: BinaryIO) -> None:
        with self._explained():
            self.download_listed(file, out)

    def download_listed(self, file: RemoteFile, out: BinaryIO) -> None:
        """Exactly the listed version of a file into `out`: BlobGone if it was deleted or
        written again since (412), the SDK's own error for anything else (a writer retries
        the transient ones; a reader's `_download` says them as the operator's)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        blob = self.client.get_blob_client(self.location.blob_prefix + file.path)
        try:
            blob.download_blob(etag=file.etag, match_condition=MatchConditions.IfNotModified,
                               max_concurrency=1).readinto(out)
        except (ResourceNotFoundError, ResourceModifiedError) as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            raise BlobGone(file.path) from None

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """The SDK's errors as operator messages. Their text is not repeated whole: a
        refused signature's message may quote it."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

        try:
            yield
        except HttpResponseError as exc:
            code = getattr(exc, "error_code", None) or exc.reason or "no error code"
            code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum: its wire name
            if exc.status_code in (401, 403):
                raise RemoteWarehouseError(
                    f"Blob Storage refused access to {self.where} ({exc.status_code} {code}). Check the "
                    "account key or SAS in AMLWH_WAREHOUSE__CONNECTION_STRING (a SAS needs read and "
                    "list permissions, and must not have expired), or that the Azure AD identity "
                    "has the Storage Blob Data Reader role on the container") from None
            if exc.status_code == 404:
                raise RemoteWarehouseError(
                    f"there is no {self.where} ({code}). Check the container in [warehouse] path "
                    f"({self.location.url}) and the account in the credentials") from None
            if isinstance(exc, ClientAuthenticationError):  # no HTTP status: no token was had
                raise RemoteWarehouseError(
                    f"no Azure AD token for {self.where}: {exc.message}. Sign in (az login), run "
                    "with a managed or workload identity ([identity] client_id), or set "
                    "AMLWH_WAREHOUSE__CONNECTION_STRING") from None
            raise RemoteWarehouseError(
                f"Blob Storage failed to serve {self.where}: {exc.status_code} {code}; try again") from None
        except ServiceRequestError as exc:
            raise RemoteWarehouseError(
                f"cannot reach the Blob Storage endpoint {self.client.primary_hostname} for "
                f"{self.where}: {_reason(exc)}. Check the endpoint in the credentials and the "
                "network path to it") from None


def _reason(exc: Exception) -> str:
    """The OS's words for a failed connection ("[Errno 111] Connection refused"), not the
    SDK's message: that one quotes the URL, with a SAS when there is one."""
    found = re.search(r"\[Errno -?\d+\] [^'\"\]>)]*", str(exc))
    return found.group(0).strip() if found else type(exc).__name__


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """`name`'s log records kept out while inside, unless debug logging (`-v`) is on."""
    logger = logging.getLogger(name)
    level = logger.level
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
