#!/usr/bin/env python3
"""cloakroom's side-by-side benchmark (run it through `bench/run`, which installs and builds first).

In one run, on loopback, with the same load for each (wrk, fixed connections and duration):
  (a) the upstream API directly: the physical limit;
  (b) Debian's nginx as a plain reverse proxy, no authentication: the cost of one proxy hop;
  (h) a bare hyper reverse proxy (bench/bare_proxy.rs): cloakroom's HTTP stack and nothing else,
      so the gap from (h) to (c) is cloakroom's own work and the gap from (b) to (h) the stack's;
  (hc) the same bare proxy with cloakroom's own upstream client (src/upstream/) in place of
      hyper-util's: the client alone, against (h);
  (c) cloakroom on an authenticated `user` route: cookie, session lookup, decrypt, Bearer attached;
  (c10k) the same with many live sessions in the store, each request presenting the next one;
  (r) cloakroom on a route with authorization rules (claims and granted scope), behind eight
      other ruled routes: what rules cost on the request path, against (c);
  (i) cloakroom on a route with identity headers (the X-Auth-Request-* set) beside the token;
  (s) the same with a signed identity assertion (an EdDSA JWT per call) too;
  (x) cloakroom on a route whose token is exchanged (RFC 8693), the exchanged token cached:
      what identity, the assertion and a cached exchanged token cost per call, against (c);
  (t) cloakroom with OpenTelemetry traces on, every call sampled and exported over OTLP/HTTP (the
      upstream is the collector too), and (t0) on with none sampled (`sample_ratio = 0`), which
      still makes the spans and sends the trace context on: tracing's cost against (c), which
      runs with it off;
  (p) cloakroom with DPoP (RFC 9449: `oidc.dpop`, a route with `dpop = true`): the session's
      key read from its sealed record and a proof (an ES256 JWT) signed per call, against (c);
  (d) Apache httpd with Debian's mod_auth_openidc on an authenticated route: a mainstream OIDC proxy.
Both authenticating proxies sign in programmatically against the same real OpenID provider (the
test suite's oidc-provider). Every request wrk counts must have reached the upstream, and for (c)
and (d) carried a Bearer token: the upstream counts, and a run whose counts fall short is marked
invalid instead of being reported. Then the refresh storm: many concurrent calls at access-token
expiry, exactly one refresh expected at the provider, with the storm's latency percentiles.

Servers (upstream, proxies, provider) are pinned to CPU 0 and the load generator to CPU 1.
Rounds interleave the targets, so drift on the machine spreads over all of them; the table gives
medians with min-max.
"""

import argparse
import asyncio
import base64
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = Path(os.environ.get("BENCH_RELEASE_DIR", ROOT / "target/release"))
BENCH = ROOT / "bench"
SERVER_CPU = "0"
LOAD_CPU = "1"
CSRF = ("X-CSRF", "1")
BOTH_CPUS = "0,1"
OURS = ("c", "c10k", "r", "i", "s", "x", "t", "t0", "p", "cr", "cr0", "c2")
API_PATH = "/api/items"
RULED_PATH = "/ruled/items"
IDENTITY_PATH = "/identity/items"
ASSERTED_PATH = "/asserted/items"
EXCHANGED_PATH = "/exchanged/items"
BOUND_PATH = "/bound/items"


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, name, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode} before listening; see its log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not listen on {port} within {timeout}s")


class Processes:
    """Everything the benchmark started, stopped together (process groups: nginx and Apache fork)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.running = []

    def start(self, name, argv, env=None, stdin=None, stdout=None, cpus=SERVER_CPU):
        logfile = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else logfile,
            stderr=logfile,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def stop_all(self):
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# A minimal browser for programmatic sign-in: keep-alive connections, cookies kept per origin
# (host and port: stricter than a browser, which is what keeps the proxies' cookies apart here).


class Browser:
    def __init__(self):
        self.connections = {}
        self.jar = {}

    def forget_cookies(self):
        self.jar = {}

    def request(self, method, url, body=None, headers=()):
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Accept": "text/html", **dict(headers)}  # a navigation, as a browser sends it
        cookies = self.jar.get(parts.netloc)
        if cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            connection = self.connections.get(parts.netloc)
            if connection is None:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                self.connections[parts.netloc] = connection
            try:
                connection.request(method, path, body=body, headers=sent)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                del self.connections[parts.netloc]
                if attempt == 2:
                    raise
        jar = self.jar.setdefault(parts.netloc, {})
        for header in response.headers.get_all("Set-Cookie") or []:
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            attributes = attributes.lower()
            if not value or "max-age=0" in attributes or "1970" in attributes:
                jar.pop(name, None)
            else:
                jar[name] = value
        return response.status, response.headers, data

    def follow(self, url, stop):
        """GETs through redirects until `stop(url)` or a non-redirect answer; returns (url, answer)."""
        for _ in range(20):
            if stop(url):
                return url, None
            status, headers, body = self.request("GET", url)
            if status not in (301, 302, 303, 307, 308):
                return url, (status, body)
            url = urllib.parse.urljoin(url, headers["Location"])
        raise RuntimeError(f"too many redirects, last at {url}")

    def sign_in(self, start_url, issuer, user, callback_prefix):
        """Walks a whole authorization-code sign-in as `user`, through the provider's login form."""
        status, headers, body = self.request("GET", start_url)
        if status not in (302, 303):
            raise RuntimeError(f"{start_url} answered {status}, not a redirect to the provider: {body[:200]!r}")
        url = urllib.parse.urljoin(start_url, headers["Location"])
        at_provider = lambda u: u.startswith(issuer + "/")  # noqa: E731
        url, page = self.follow(url, lambda u: not at_provider(u))
        if page is not None:
            uid = url.rstrip("/").rsplit("/", 1)[1]
            status, headers, body = self.request("POST", f"{issuer}/interaction/{uid}/login", body=f"login={user}")
            if status not in (302, 303):
                raise RuntimeError(f"the provider refused the sign-in: {status} {body[:200]!r}")
            url, page = self.follow(urllib.parse.urljoin(issuer, headers["Location"]), lambda u: not at_provider(u))
            if page is not None:
                raise RuntimeError(f"the provider stopped at {url}: {page[0]} {page[1][:200]!r}")
        if not url.startswith(callback_prefix):
            raise RuntimeError(f"the provider redirected to {url}, not to {callback_prefix}")
        # cloakroom answers the callback with a page that moves on (SameSite=Strict), Apache with 302.
        status, _, body = self.request("GET", url)
        origin = urllib.parse.urlsplit(callback_prefix).netloc
        cookies = self.jar.get(origin)
        if status not in (200, 302, 303) or not cookies:
            raise RuntimeError(f"the callback answered {status} and set no session: {body[:300]!r}")
        return "; ".join(f"{k}={v}" for k, v in cookies.items())


def sign_in_bench_user(origin, provider):
    """The user bench-0 signed in at the cloakroom at `origin`; its session cookie."""
    return Browser().sign_in(f"{origin}/bff/login?returnUrl=/", provider.issuer, "bench-0", f"{origin}/bff/callback")


def http_json(method, url, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(method, parts.path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {url}: {response.status} {body[:300]!r}")
    return json.loads(body) if body else None


def get_status(url, headers=()):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", parts.path, headers=dict(headers))
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


# ------------------------------------------------------------------------------------------------
# The servers.


class Provider:
    """The test suite's oidc-provider; it exits when its stdin closes."""

    def __init__(self, processes, name, access_token_ttl):
        self.process = processes.start(
            name,
            ["node", "tests/provider/server.mjs"],
            env={"ACCESS_TOKEN_TTL": str(access_token_ttl)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the provider did not start; see {processes.workdir}/{name}.log")
        self.issuer = json.loads(line)["issuer"]

    def register(self, redirect_uri, refresh):
        grants = ["authorization_code", "refresh_token"] if refresh else ["authorization_code"]
        grants.append("urn:ietf:params:oauth:grant-type:token-exchange")
        client = http_json("POST", f"{self.issuer}/reg", {
            "redirect_uris": [redirect_uri],
            "grant_types": grants,
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        })
        return client["client_id"], client["client_secret"]

    def events(self):
        return http_json("GET", f"{self.issuer}/__test/events")

    def refreshes(self):
        return sum(1 for e in self.events() if e["type"] == "grant.success" and e["grant_type"] == "refresh_token")


class Upstream:
    def __init__(self, processes, name="upstream", cpus=SERVER_CPU):
        self.port = free_port()
        binary = RELEASE / "examples/bench-upstream"
        self.process = processes.start(name, [str(binary), f"127.0.0.1:{self.port}"], cpus=cpus)
        wait_for_port(self.port, self.process, "the upstream")

    def counts(self):
        return http_json("GET", f"http://127.0.0.1:{self.port}/__count")


def start_nginx(processes, workdir, upstream, name="nginx", workers=1, cpus=SERVER_CPU):
    port = free_port()
    conf = workdir / f"{name}.conf"
    conf.write_text(f"""
worker_processes {workers};
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {workdir}/{name}-body;
  proxy_temp_path {workdir}/{name}-proxy;
  fastcgi_temp_path {workdir}/{name}-fastcgi;
  uwsgi_temp_path {workdir}/{name}-uwsgi;
  scgi_temp_path {workdir}/{name}-scgi;
  upstream api {{ server 127.0.0.1:{upstream.port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    process = processes.start(name, ["nginx", "-c", str(conf), "-g", "daemon off;"], cpus=cpus)
    wait_for_port(port, process, "nginx")
    return process, port


def start_bare_proxy(processes, upstream, *modes):
    """The bare hyper proxy, with hyper-util's client or ("cloakroom-client") cloakroom's, and
    ("cloakroom-server") served by cloakroom's server stack."""
    port = free_port()
    binary = RELEASE / "examples/bench-bare-proxy"
    command = [str(binary), f"127.0.0.1:{port}", f"http://127.0.0.1:{upstream.port}", *modes]
    process = processes.start("bare-proxy-" + ("-".join(modes) or "hyper-util"), command)
    wait_for_port(port, process, "the bare hyper proxy")
    return process, port


def start_redis(processes):
    """A redis-server of the benchmark's own (no persistence), on the servers' CPU: with the
    Redis store its work shares the CPU with cloakroom's, as on a one-machine deployment."""
    port = free_port()
    process = processes.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                        "--save", "", "--appendonly", "no"])
    wait_for_port(port, process, "redis")
    return port


def start_cloakroom(processes, workdir, name, provider, upstream, refresh_margin="30s", extra="", oidc_extra="",
                    session_extra="", cpus=SERVER_CPU):
    port, admin = free_port(), free_port()
    origin = f"http://127.0.0.1:{port}"
    client_id, client_secret = provider.register(f"{origin}/bff/callback", refresh=True)
    conf = workdir / f"{name}.toml"
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    conf.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
public_url = "{origin}"
admin_listen = "127.0.0.1:{admin}"
max_connections = 100000
shutdown_delay = "0s"

[oidc]
issuer = "{provider.issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
scopes = ["openid", "profile", "email", "offline_access", "api:read"]
refresh_margin = "{refresh_margin}"
{oidc_extra}

[session]
keys = ["{key}"]
{session_extra}

[log]
level = "warn"

[[routes]]
prefix = "/api/"
upstream = "http://127.0.0.1:{upstream.port}/api/"
token = "user"
{ruled_routes(upstream)}
[[routes]]
prefix = "/identity/"
upstream = "http://127.0.0.1:{upstream.port}/api/"
[routes.identity]

[[routes]]
prefix = "/asserted/"
upstream = "http://127.0.0.1:{upstream.port}/api/"
[routes.identity]
assertion = true

[[routes]]
prefix = "/exchanged/"
upstream = "http://127.0.0.1:{upstream.port}/api/"
[routes.exchange]
audience = "urn:cloakroom:bench"
{extra}
""")
    # Its runtime has one worker thread per CPU it may use (server.worker_threads = 0).
    process = processes.start(name, [str(RELEASE / "cloakroom"), "--config", str(conf)], cpus=cpus)
    wait_for_port(port, process, name)
    # Ready once it has the provider's metadata: sign-ins before that are refused (502).
    deadline = time.monotonic() + 30
    while get_status(f"http://127.0.0.1:{admin}/readyz") != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not become ready; see {workdir}/{name}.log")
        time.sleep(0.05)
    return process, origin


def ruled_routes(upstream):
    """Nine routes with authorization rules; the (r) run calls the last one, whose rules the
    bench users meet: two on claims (as the README's example) and one on the granted scope."""
    routes = []
    for i in range(8):
        routes.append(f"""
[[routes]]
prefix = "/team{i}/"
upstream = "http://127.0.0.1:{upstream.port}/api/"
[[routes.rules]]
claim = "groups"
contains_any = ["team{i}", "team{i}-leads"]
""")
    routes.append(f"""
[[routes]]
prefix = "/ruled/"
upstream = "http://127.0.0.1:{upstream.port}/api/"
[[routes.rules]]
claim = "groups"
contains_any = ["admins", "staff"]
[[routes.rules]]
claim = "email_verified"
equals = true
[[routes.rules]]
scope = "api:read"
""")
    return "".join(routes)


def start_apache(processes, workdir, provider, upstream):
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    redirect_uri = f"{origin}/api/redirect_uri"
    client_id, client_secret = provider.register(redirect_uri, refresh=False)
    modules = "/usr/lib/apache2/modules"
    conf = workdir / "apache.conf"
    conf.write_text(f"""
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {workdir}/apache.pid
ErrorLog {workdir}/apache-error.log
LogLevel warn
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule headers_module {modules}/mod_headers.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule auth_openidc_module {modules}/mod_auth_openidc.so
User www-data
Group www-data
# mpm_event with every process started up front (Debian's ThreadsPerChild, four children) and
# keep-alive unlimited as for the other proxies: with Debian's spare-thread defaults, Apache
# starts and stops children under this load, and a stopped child's connections fail in wrk.
ServerLimit 4
StartServers 4
MinSpareThreads 25
MaxSpareThreads 100
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 100
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60

OIDCProviderMetadataURL {provider.issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI {redirect_uri}
OIDCCryptoPassphrase {secrets.token_hex(32)}
OIDCScope "openid profile email"
OIDCPKCEMethod S256
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCCacheType shm
OIDCPassClaimsAs environment

<Location /api/>
  AuthType openid-connect
  Require valid-user
  RequestHeader set Authorization "Bearer %{{OIDC_access_token}}e"
  ProxyPass http://127.0.0.1:{upstream.port}/api/
</Location>
""")
    process = processes.start("apache", ["apache2", "-f", str(conf), "-DFOREGROUND"])
    wait_for_port(port, process, "Apache")
    return process, origin


# ------------------------------------------------------------------------------------------------
# Load, checked at the upstream.


def wrk(url, args, headers=(), script="report.lua", script_args=(), cpus=LOAD_CPU, threads=1):
    argv = ["taskset", "-c", cpus, "wrk", f"-t{threads}", f"-c{args.connections}", f"-d{args.duration}s",
            "--latency", "-s", str(BENCH / script)]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    argv += [url]
    if script_args:
        argv += ["--", *script_args]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(target, upstream, args):
    upstream = target.get("upstream", upstream)
    before = upstream.counts()
    cpu_before = group_cpu_seconds(target["pgid"])
    result = wrk(target["url"], args, target.get("headers", ()), target.get("script", "report.lua"),
                 target.get("script_args", ()), target.get("load_cpus", LOAD_CPU), target.get("threads", 1))
    cpu_after = group_cpu_seconds(target["pgid"])
    after = upstream.counts()
    result["user_us"] = (cpu_after[0] - cpu_before[0]) / max(result["requests"], 1) * 1e6
    result["sys_us"] = (cpu_after[1] - cpu_before[1]) / max(result["requests"], 1) * 1e6
    arrived = after["total"] - before["total"]
    # What an authenticated request must carry to count: the Bearer JWT, or what the target's
    # route adds (identity headers, the assertion) or sends instead (an exchanged token).
    counter = target.get("counter", "bearer")
    bearer = after[counter] - before[counter]
    counted = bearer if target["authenticated"] else arrived
    # wrk counts completed responses; requests still in flight when it stops may have arrived too.
    problems = []
    if result["status_errors"] or result["socket_errors"]:
        problems.append(f"{result['status_errors']} error statuses, {result['socket_errors']} socket errors "
                        f"(connect {result['connect_errors']}, read {result['read_errors']}, "
                        f"write {result['write_errors']}, timeout {result['timeouts']})")
    if counted < result["requests"]:
        what = f"with its credential ({counter})" if target["authenticated"] else "at all"
        problems.append(f"only {counted} of {result['requests']} requests reached the upstream {what}")
    if target.get("exports") and after["exports"] == before["exports"]:
        problems.append("no span export reached the collector")
    if target["authenticated"] and arrived != bearer:
        problems.append(f"{arrived - bearer} requests reached the upstream without their credential ({counter})")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["problems"] = problems
    return result


def sign_in_many(count, start_url, issuer, callback_prefix, workers=8):
    """Signs in `count` distinct users (`bench-<n>`), each in a fresh browser; returns the cookies.

    The test provider keeps its interactions in oidc-provider's development adapter, an LRU of
    bounded size: under thousands of sign-ins one may lose an interaction between the login form
    and the consent step and answer `invalid_request` on its own interaction page, before
    cloakroom is involved again. Such a sign-in is started over once, and counted."""
    restarted = []

    def one(browser, i):
        for attempt in (1, 2):
            browser.forget_cookies()
            try:
                return browser.sign_in(start_url, issuer, f"bench-{i}", callback_prefix)
            except RuntimeError as e:
                lost = "/interaction/" in str(e) and "invalid_request" in str(e)
                if attempt == 2 or not lost:
                    raise
                restarted.append(i)

    def batch(indices):
        browser = Browser()
        return [one(browser, i) for i in indices]

    shards = [range(w, count, workers) for w in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        cookies = [cookie for shard in pool.map(batch, shards) for cookie in shard]
    if restarted:
        log(f"  {len(restarted)} sign-in(s) started over after the provider lost its interaction")
    return cookies


def group_cpu_seconds(pgid):
    """User and system CPU seconds so far of a process group: a proxy with all its workers."""
    user = system = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ... utime (11), stime (12)
            user += int(fields[11])
            system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# ------------------------------------------------------------------------------------------------
# The refresh storm: concurrent calls on already-open connections, fired together.


async def storm(port, cookie, count):
    request = (f"GET {API_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
               f"{CSRF[0]}: {CSRF[1]}\r\nConnection: close\r\n\r\n").encode()
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]

    async def call(reader, writer):
        started = time.perf_counter()
        writer.write(request)
        await writer.drain()
        response = await reader.read()
        elapsed = time.perf_counter() - started
        writer.close()
        return int(response.split(b" ", 2)[1]), elapsed

    return await asyncio.gather(*(call(r, w) for r, w in connections))


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def refresh_storms(processes, workdir, upstream, args):
    # Access tokens live 32 s and cloakroom refreshes 30 s ahead: due two seconds after sign-in.
    provider = Provider(processes, "provider-storm", access_token_ttl=32)
    _, origin = start_cloakroom(processes, workdir, "cloakroom-storm", provider, upstream, refresh_margin="30s")
    port = int(origin.rsplit(":", 1)[1])
    results = []
    for round_ in range(args.storm_rounds):
        cookie = Browser().sign_in(f"{origin}/bff/login?returnUrl=/", provider.issuer, f"bench-{900000 + round_}",
                                   f"{origin}/bff/callback")
        time.sleep(3)
        refreshes_before, bearer_before = provider.refreshes(), upstream.counts()["bearer"]
        calls = asyncio.run(storm(port, cookie, args.storm))
        # Due but still valid: the calls go on with it at once and the first starts the refresh
        # beside them. Count once it has landed (and long enough after for a second to show).
        deadline = time.time() + 10
        while provider.refreshes() == refreshes_before and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        refreshes = provider.refreshes() - refreshes_before
        reached = upstream.counts()["bearer"] - bearer_before
        latencies = [elapsed for _, elapsed in calls]
        statuses = sorted({status for status, _ in calls})
        results.append({
            "refreshes": refreshes, "statuses": statuses, "reached": reached,
            "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
            "max_ms": max(latencies) * 1e3,
        })
        log(f"  storm {round_ + 1}: {refreshes} refresh(es), statuses {statuses}, {reached} reached the "
            f"upstream, p50 {results[-1]['p50_ms']:.1f} ms, p99 {results[-1]['p99_ms']:.1f} ms")
    return results


# ------------------------------------------------------------------------------------------------


def summarize(runs):
    valid = [r for r in runs if not r["problems"]]
    if not valid:
        return None

    def spread(key, scale=1.0):
        values = [r[key] * scale for r in valid]
        return statistics.median(values), min(values), max(values)

    return {"rps": spread("rps"), "p50": spread("p50_us", 1e-3), "p99": spread("p99_us", 1e-3),
            "user_us": spread("user_us")[0], "sys_us": spread("sys_us")[0],
            "rounds": len(valid), "invalid": len(runs) - len(valid)}


def print_table(targets, summaries, args):
    print()
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} round(s), servers on CPU {SERVER_CPU}, "
          f"wrk on CPU {LOAD_CPU}; median [min-max]")
    header = (f"{'target':<44}{'requests/s':>26}{'p50 ms':>22}{'p99 ms':>22}{'rps/(b)':>9}{'p99-(b)':>9}"
              f"{'CPU us/req':>14}")
    print(header)
    print("-" * len(header))
    for target in targets:
        # The two-CPU rows are set against nginx on two CPUs (b2), the rest against (b).
        base = summaries.get(target.get("base", "b"))
        s = summaries.get(target["id"])
        if s is None:
            print(f"{target['label']:<44}  no valid round (see the problems above)")
            continue
        rps = f"{s['rps'][0]:,.0f} [{s['rps'][1]:,.0f}-{s['rps'][2]:,.0f}]"
        p50 = f"{s['p50'][0]:.2f} [{s['p50'][1]:.2f}-{s['p50'][2]:.2f}]"
        p99 = f"{s['p99'][0]:.2f} [{s['p99'][1]:.2f}-{s['p99'][2]:.2f}]"
        ratio = f"{s['rps'][0] / base['rps'][0]:.2f}x" if base else "-"
        delta = f"{s['p99'][0] - base['p99'][0]:+.2f}" if base else "-"
        cpu = f"{s['user_us']:.1f}+{s['sys_us']:.1f}"
        print(f"{target['label']:<44}{rps:>26}{p50:>22}{p99:>22}{ratio:>9}{delta:>9}{cpu:>14}")
    print("CPU us/req: user+system CPU of the proxy's own processes (the upstream's for (a)) per request; "
          "rows (b2) and (c2) are set against (b2)")
    c, d, r = summaries.get("c"), summaries.get("d"), summaries.get("r")
    if c and r:
        print(f"\ncloakroom ruled route (r) / user route (c): {r['rps'][0] / c['rps'][0]:.2f}x throughput, "
              f"p99 {r['p99'][0] - c['p99'][0]:+.2f} ms, CPU {r['user_us'] - c['user_us']:+.1f} us/req user")
    for tid, what in (("i", "identity headers"), ("s", "identity + assertion"), ("x", "cached exchanged token"),
                      ("t", "traces, all sampled"), ("t0", "traces, none sampled"), ("p", "DPoP, a proof per call")):
        other = summaries.get(tid)
        if c and other:
            print(f"cloakroom {what} ({tid}) / user route (c): {other['rps'][0] / c['rps'][0]:.2f}x throughput, "
                  f"p99 {other['p99'][0] - c['p99'][0]:+.2f} ms, CPU {other['user_us'] - c['user_us']:+.1f} us/req user")
    for tid, what in (("cr", "Redis store, copies on"), ("cr0", "Redis store, no copies")):
        other = summaries.get(tid)
        if c and other:
            print(f"cloakroom {what} ({tid}) / memory store (c): {other['rps'][0] / c['rps'][0]:.2f}x throughput, "
                  f"p99 {other['p99'][0] - c['p99'][0]:+.2f} ms, CPU {other['user_us'] - c['user_us']:+.1f} us/req user "
                  f"(cloakroom's; Redis's own CPU not counted)")
    b, b2, c2 = summaries.get("b"), summaries.get("b2"), summaries.get("c2")
    if b and b2 and c and c2:
        print(f"\nboth CPUs (upstream, proxy and wrk -t2 sharing CPUs {BOTH_CPUS}): nginx (b2) "
              f"{b2['rps'][0]:,.0f} req/s, {b2['rps'][0] / b['rps'][0]:.2f}x its one-CPU (b); cloakroom (c2) "
              f"{c2['rps'][0]:,.0f} req/s, {c2['rps'][0] / c['rps'][0]:.2f}x its one-CPU (c); "
              f"(c2)/(b2) {c2['rps'][0] / b2['rps'][0]:.2f}x, p99 {c2['p99'][0] - b2['p99'][0]:+.2f} ms")
    if c and d:
        print(f"\ncloakroom (c) / Apache mod_auth_openidc (d): {c['rps'][0] / d['rps'][0]:.2f}x throughput, "
              f"p99 {c['p99'][0] - d['p99'][0]:+.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load per target first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=10_000, help="live sessions for the (c10k) run")
    parser.add_argument("--storm", type=int, default=200, help="concurrent calls at expiry")
    parser.add_argument("--storm-rounds", type=int, default=3)
    parser.add_argument("--sustained", type=int, default=60, help="seconds of the sustained (c) run")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--serve", action="store_true",
                        help="start everything and sign in, print the wrk commands, wait for Ctrl-C (for profilers)")
    parser.add_argument("--quick", action="store_true", help="one short round and 500 sessions: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.sessions, args.storm_rounds = 1, 2, 1, 500, 1
        args.sustained = 5
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    workdir = Path(tempfile.mkdtemp(prefix="cloakroom-bench-"))
    processes = Processes(workdir)
    succeeded = False
    try:
        upstream = Upstream(processes)
        provider = Provider(processes, "provider", access_token_ttl=3600)
        nginx, nginx_port = start_nginx(processes, workdir, upstream)
        bare, bare_port = start_bare_proxy(processes, upstream)
        bare_own, bare_own_port = start_bare_proxy(processes, upstream, "cloakroom-client")
        bare_stack, bare_stack_port = start_bare_proxy(processes, upstream, "cloakroom-client", "cloakroom-server")
        cloakroom, origin = start_cloakroom(processes, workdir, "cloakroom", provider, upstream)
        apache_process, apache = start_apache(processes, workdir, provider, upstream)
        collector = f"http://127.0.0.1:{upstream.port}/v1/traces"
        traced, traced_origin = start_cloakroom(processes, workdir, "cloakroom-traced", provider, upstream,
                                                extra=f'[traces]\nendpoint = "{collector}"\nsample_ratio = 1.0')
        unsampled, unsampled_origin = start_cloakroom(processes, workdir, "cloakroom-unsampled", provider, upstream,
                                                      extra=f'[traces]\nendpoint = "{collector}"\nsample_ratio = 0.0')
        redis_port = start_redis(processes)
        redis_session = f'store = "redis"\nredis_url = "redis://127.0.0.1:{redis_port}"'
        shared, shared_origin = start_cloakroom(processes, workdir, "cloakroom-redis", provider, upstream,
                                                session_extra=f'{redis_session}\nredis_key_prefix = "copy:"')
        uncopied, uncopied_origin = start_cloakroom(
            processes, workdir, "cloakroom-redis-nocopy", provider, upstream,
            session_extra=f'{redis_session}\nredis_key_prefix = "nocopy:"\nredis_cache_entries = 0')
        # The two-CPU run: an upstream, nginx (two workers) and cloakroom that may use both CPUs,
        # loaded by wrk with two threads on both CPUs alike.
        upstream2 = Upstream(processes, "upstream-2cpu", cpus=BOTH_CPUS)
        nginx2, nginx2_port = start_nginx(processes, workdir, upstream2, "nginx-2cpu", workers=2, cpus=BOTH_CPUS)
        cloakroom2, origin2 = start_cloakroom(processes, workdir, "cloakroom-2cpu", provider, upstream2, cpus=BOTH_CPUS)
        bound_route = f'[[routes]]\nprefix = "/bound/"\nupstream = "http://127.0.0.1:{upstream.port}/api/"\ndpop = true'
        bound, bound_origin = start_cloakroom(processes, workdir, "cloakroom-dpop", provider, upstream,
                                              extra=bound_route, oidc_extra="dpop = true")

        # Both authenticating proxies must refuse the route without a session: no free requests.
        refused = {"c": get_status(f"{origin}{API_PATH}", [CSRF]), "d": get_status(f"{apache}{API_PATH}"),
                   "r": get_status(f"{origin}{RULED_PATH}", [CSRF])}
        if refused["c"] != 401 or refused["r"] != 401 or refused["d"] not in (302, 303, 401):
            raise SystemExit(f"an authenticated route answered without a session: {refused}")
        log("signing in (cloakroom and Apache, through the provider's login form)")
        cloakroom_cookie = sign_in_bench_user(origin, provider)
        apache_cookie = Browser().sign_in(f"{apache}{API_PATH}", provider.issuer, "bench-0",
                                          f"{apache}/api/redirect_uri")
        traced_cookie = sign_in_bench_user(traced_origin, provider)
        bound_cookie = sign_in_bench_user(bound_origin, provider)
        unsampled_cookie = sign_in_bench_user(unsampled_origin, provider)
        shared_cookie = sign_in_bench_user(shared_origin, provider)
        uncopied_cookie = sign_in_bench_user(uncopied_origin, provider)
        cookie2 = sign_in_bench_user(origin2, provider)
        # The ruled routes must check: a team route the bench user is in no group of refuses.
        team = get_status(f"{origin}/team0/items", [("Cookie", cloakroom_cookie), CSRF])
        if team != 403:
            raise SystemExit(f"a ruled route admitted a user its rules do not: {team}")
        targets = [
            {"id": "a", "label": "(a) upstream directly", "authenticated": False, "pgid": upstream.process.pid,
             "url": f"http://127.0.0.1:{upstream.port}{API_PATH}"},
            {"id": "b", "label": "(b) nginx, plain proxy", "authenticated": False, "pgid": nginx.pid,
             "url": f"http://127.0.0.1:{nginx_port}{API_PATH}"},
            {"id": "h", "label": "(h) bare hyper proxy, no auth", "authenticated": False, "pgid": bare.pid,
             "url": f"http://127.0.0.1:{bare_port}{API_PATH}"},
            {"id": "hc", "label": "(hc) bare hyper proxy, cloakroom's client", "authenticated": False,
             "pgid": bare_own.pid, "url": f"http://127.0.0.1:{bare_own_port}{API_PATH}"},
            {"id": "hs", "label": "(hs) bare proxy, cloakroom's client+server", "authenticated": False,
             "pgid": bare_stack.pid, "url": f"http://127.0.0.1:{bare_stack_port}{API_PATH}"},
            {"id": "c", "label": "(c) cloakroom, user route", "authenticated": True, "pgid": cloakroom.pid,
             "url": f"{origin}{API_PATH}", "headers": [("Cookie", cloakroom_cookie), CSRF]},
            {"id": "r", "label": "(r) cloakroom, ruled route", "authenticated": True, "pgid": cloakroom.pid,
             "url": f"{origin}{RULED_PATH}", "headers": [("Cookie", cloakroom_cookie), CSRF]},
            {"id": "i", "label": "(i) cloakroom, identity headers", "authenticated": True, "pgid": cloakroom.pid,
             "url": f"{origin}{IDENTITY_PATH}", "headers": [("Cookie", cloakroom_cookie), CSRF], "counter": "identity"},
            {"id": "s", "label": "(s) cloakroom, identity + assertion", "authenticated": True, "pgid": cloakroom.pid,
             "url": f"{origin}{ASSERTED_PATH}", "headers": [("Cookie", cloakroom_cookie), CSRF], "counter": "assertion"},
            {"id": "x", "label": "(x) cloakroom, exchanged token (cached)", "authenticated": True,
             "pgid": cloakroom.pid, "url": f"{origin}{EXCHANGED_PATH}", "headers": [("Cookie", cloakroom_cookie), CSRF],
             "counter": "exchanged"},
            {"id": "t", "label": "(t) cloakroom, traces on, all sampled", "authenticated": True,
             "pgid": traced.pid, "url": f"{traced_origin}{API_PATH}", "headers": [("Cookie", traced_cookie), CSRF],
             "counter": "traced", "exports": True},
            {"id": "t0", "label": "(t0) cloakroom, traces on, none sampled", "authenticated": True,
             "pgid": unsampled.pid, "url": f"{unsampled_origin}{API_PATH}",
             "headers": [("Cookie", unsampled_cookie), CSRF], "counter": "traced"},
            {"id": "p", "label": "(p) cloakroom, DPoP route", "authenticated": True, "pgid": bound.pid,
             "url": f"{bound_origin}{BOUND_PATH}", "headers": [("Cookie", bound_cookie), CSRF], "counter": "dpop"},
            {"id": "cr", "label": "(cr) cloakroom, Redis store, copies on", "authenticated": True,
             "pgid": shared.pid, "url": f"{shared_origin}{API_PATH}", "headers": [("Cookie", shared_cookie), CSRF]},
            {"id": "cr0", "label": "(cr0) cloakroom, Redis store, no copies", "authenticated": True,
             "pgid": uncopied.pid, "url": f"{uncopied_origin}{API_PATH}",
             "headers": [("Cookie", uncopied_cookie), CSRF]},
            {"id": "b2", "label": "(b2) nginx, 2 workers, both CPUs", "authenticated": False, "pgid": nginx2.pid,
             "url": f"http://127.0.0.1:{nginx2_port}{API_PATH}", "upstream": upstream2, "load_cpus": BOTH_CPUS,
             "threads": 2, "base": "b2"},
            {"id": "c2", "label": "(c2) cloakroom, user route, both CPUs", "authenticated": True,
             "pgid": cloakroom2.pid, "url": f"{origin2}{API_PATH}", "headers": [("Cookie", cookie2), CSRF],
             "upstream": upstream2, "load_cpus": BOTH_CPUS, "threads": 2, "base": "b2"},
            {"id": "d", "label": "(d) Apache mod_auth_openidc", "authenticated": True, "pgid": apache_process.pid,
             "url": f"{apache}{API_PATH}", "headers": [("Cookie", apache_cookie)]},
        ]

        if args.serve:
            for target in targets:
                headers = " ".join(f"-H '{n}: {v}'" for n, v in target.get("headers", ()))
                print(f"{target['label']}: taskset -c {target.get('load_cpus', LOAD_CPU)} wrk "
                      f"-t{target.get('threads', 1)} -c{args.connections} -d{args.duration}s "
                      f"--latency {headers} {target['url']}")
            print(f"cloakroom's pid: {cloakroom.pid}; logs in {workdir}; Ctrl-C stops everything", flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            succeeded = True
            return 0

        log(f"signing in {args.sessions} more users at cloakroom for the many-sessions run")
        rss_before = rss_bytes(cloakroom.pid)
        started = time.monotonic()
        cookies = sign_in_many(args.sessions, f"{origin}/bff/login?returnUrl=/", provider.issuer,
                               f"{origin}/bff/callback")
        rss_after = rss_bytes(cloakroom.pid)
        log(f"  {len(cookies)} sign-ins in {time.monotonic() - started:.0f} s; cloakroom's resident memory grew "
            f"{(rss_after - rss_before) / len(cookies):,.0f} bytes per session")
        cookie_file = workdir / "cookies.txt"
        cookie_file.write_text("\n".join(cookies) + "\n")
        targets.append({"id": "c10k", "label": f"(c) cloakroom, {len(cookies)} sessions rotating", "pgid": cloakroom.pid,
                        "authenticated": True, "url": f"{origin}{API_PATH}", "headers": [CSRF],
                        "script": "rotate.lua", "script_args": [str(cookie_file)]})

        for target in targets:
            if args.warmup:
                warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
                measure(target, upstream, warm)
        runs = {t["id"]: [] for t in targets}
        for round_ in range(args.rounds):
            for target in targets:
                result = measure(target, upstream, args)
                # A peer's round spoilt only by a dropped connection (Apache now and then closes
                # one wrk was using) is measured once more, so a one-round smoke run does not
                # fail on it; cloakroom's rounds get no second chance.
                dropped_only = result["socket_errors"] and not result["status_errors"] and len(result["problems"]) == 1
                if dropped_only and target["id"] not in OURS:
                    log(f"  round {round_ + 1} {target['label']}: {'; '.join(result['problems'])}; measuring again")
                    result = measure(target, upstream, args)
                runs[target["id"]].append(result)
                status = "; ".join(result["problems"]) or "all reached the upstream" + (
                    f" with their credential ({target.get('counter', 'bearer')})" if target["authenticated"] else "")
                log(f"  round {round_ + 1} {target['label']}: {result['rps']:,.0f} req/s, "
                    f"p50 {result['p50_us'] / 1e3:.2f} ms, p99 {result['p99_us'] / 1e3:.2f} ms, "
                    f"CPU {result['user_us']:.1f}+{result['sys_us']:.1f} us/req ({status})")
        summaries = {tid: summarize(r) for tid, r in runs.items()}
        summaries = {k: v for k, v in summaries.items() if v}

        log(f"sustained load: (c) for {args.sustained} s")
        rss_sustained_before = rss_bytes(cloakroom.pid)
        sustained = measure(next(t for t in targets if t["id"] == "c"), upstream, argparse.Namespace(**{**vars(args), "duration": args.sustained}))
        rss_sustained_after = rss_bytes(cloakroom.pid)

        log(f"refresh storm: {args.storm} concurrent calls at access-token expiry, {args.storm_rounds} round(s)")
        storms = refresh_storms(processes, workdir, upstream, args)

        print_table(targets, summaries, args)
        print(f"\nmany-sessions run: cloakroom's RSS grew {(rss_after - rss_before) / len(cookies):,.0f} bytes "
              f"per session over {len(cookies)} sign-ins (real provider tokens)")
        print(f"sustained load, (c) for {args.sustained} s: {sustained['rps']:,.0f} req/s, "
              f"p99 {sustained['p99_us'] / 1e3:.2f} ms, {sustained['requests']:,} requests "
              f"({'; '.join(sustained['problems']) or 'all reached the upstream with a Bearer token'}); "
              f"cloakroom's RSS {rss_sustained_before / 2**20:.1f} MiB before, {rss_sustained_after / 2**20:.1f} MiB after")
        print(f"refresh storm, {args.storm} concurrent calls at expiry, per round: " + "; ".join(
            f"{s['refreshes']} refresh, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms"
            for s in storms))
        failed_storms = [s for s in storms if s["refreshes"] != 1 or s["statuses"] != [200] or s["reached"] < args.storm]
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                             "storms": storms}, indent=2))
        # A peer's odd failed round (Apache now and then closes a connection wrk was using) is
        # left out of its medians and shown above; any invalid cloakroom run fails the benchmark,
        # and so does a target without a single valid round.
        invalid = {tid: sum(1 for r in rs if r["problems"]) for tid, rs in runs.items()}
        ours = sum(n for tid, n in invalid.items() if tid in OURS) + len(sustained["problems"])
        missing = [t["label"] for t in targets if t["id"] not in summaries]
        if any(invalid.values()):
            print(f"\ninvalid rounds, left out of the medians: {invalid}")
        if ours or missing or failed_storms:
            print(f"\nFAILED: {ours} invalid cloakroom run(s), no valid round for {missing or 'none'}, "
                  f"{len(failed_storms)} storm(s) without exactly one refresh and every call answered 200 "
                  f"(logs in {workdir})")
            return 1
        succeeded = True
        return 0
    finally:
        processes.stop_all()
        if succeeded:
            shutil.rmtree(workdir, ignore_errors=True)  # kept, with every log, when something failed


if __name__ == "__main__":
    sys.exit(main())
