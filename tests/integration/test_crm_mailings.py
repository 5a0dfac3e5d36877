"""CRM mailings sent through a real SMTP server.

Each test that sends starts an SMTP server (aiosmtpd) in this process on a
free loopback port and server processes of its own configured to it (a
fresh database, migrated), creates a client group with contacts, and reads
what arrived: recipients, subject, rendered and escaped bodies, the
List-Unsubscribe headers. Failures are real too: a server that refuses
some recipients, and one that stops mid-run and comes back. Exactness is
counted on what arrived, with several processes sending at once."""

import asyncio
import email
import signal
import email.policy
import os
import subprocess
import threading
import time

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import check_problem, free_port, sanitizer_hits, signup, user_session
from erp_support import call
from test_erp_faults import At, wait_for
from test_exact_writes import Trio, spellings

SEND_WITHIN_S = 60  # sanitizer builds on a shared machine are slow


class Inbox:
    """An aiosmtpd handler keeping every message it accepted; addresses in
    `refuse` get a permanent 550 at RCPT."""

    def __init__(self, refuse=(), slow=0):
        self.refuse = set(refuse)
        self.slow = slow  # seconds before the reply to DATA, after keeping the message
        self.lock = threading.Lock()
        self.messages = []  # (monotonic time, recipient, parsed message)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append((time.monotonic(), rcpt, msg))
        if self.slow:
            await asyncio.sleep(self.slow)
        return "250 2.0.0 accepted"

    def to(self, address):
        with self.lock:
            return [m for _, r, m in self.messages if r == address]

    def addresses(self):
        with self.lock:
            return sorted(r for _, r, _ in self.messages)

    def times(self):
        with self.lock:
            return sorted(t for t, _, _ in self.messages)


class SmtpServer:
    """A local SMTP server that can be stopped and started again on its port."""

    def __init__(self, inbox, **options):
        self.inbox = inbox
        self.port = free_port()
        self.options = options
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                     **self.options)
        self.controller.start()

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    servers = []

    def make(refuse=(), slow=0, **options):
        s = SmtpServer(Inbox(refuse, slow), **options)
        s.start()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


def senders(trellis, server, n=1, **overrides):
    """n server processes on one fresh database, mailing through `server`."""
    port = free_port()
    cfg = dict(smtp_url=f"smtp://127.0.0.1:{server.port}", smtp_starttls="off",
               smtp_from="crm@trellis.example", public_url=f"http://127.0.0.1:{port}",
               job_backoff_ms=300, mailing_backoff_max_ms=2000, smtp_timeout_ms=5000)
    cfg.update(overrides)
    trio = Trio.__new__(Trio)  # Trio's start() and logs, with n processes
    trio.trellis = trellis
    trio.overrides = dict(cfg)
    env = trellis.env(port=port, **trio.overrides)
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0, run
    trio.db = env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]
    first = trellis.start("serve", env=env)
    first.wait_ready()
    trio.procs = [first] + [trio.start()[0] for _ in range(n - 1)]
    return trio


def stop_cleanly(trio):
    """SIGTERM every process and check that each exits 0 with no sanitizer
    report (leaks included: ASan reports them at a clean exit)."""
    for p in trio.procs:
        p.signal(signal.SIGTERM)
    for p in trio.procs:
        assert p.wait_exit(60) == 0, p.output_tail()
        assert not sanitizer_hits(p.output()), p.output_tail(80)


def group_with_contacts(at, owner, people, name="Customers"):
    """A static group; one client per entry of people (client name, [(contact
    name, email or None)]), all in the group. Returns (group, clients)."""
    r = call(at, owner, "POST", "/v1/crm/groups", json={"name": name, "rule": {"type": "static"}})
    assert r.status_code == 201, r.text
    group = r.json()
    clients = []
    for client_name, contacts in people:
        r = call(at, owner, "POST", "/v1/crm/clients",
                 json={"name": client_name, "kind": "company", "group_ids": [group["id"]]})
        assert r.status_code == 201, r.text
        client = r.json()
        for contact_name, address in contacts:
            body = {"name": contact_name}
            if address:
                body["email"] = address
            r = call(at, owner, "POST", f"/v1/crm/clients/{client['id']}/contacts", json=body)
            assert r.status_code == 201, r.text
        clients.append(client)
    return group, clients


def mailing(at, owner, group, **fields):
    body = {"name": "Winter news", "subject": "News for {{client.name}}",
            "text": "Dear {{contact.name}},\nour news.\nUnsubscribe: {{unsubscribe_url}}\n",
            "group_id": group["id"], **fields}
    r = call(at, owner, "POST", "/v1/crm/mailings", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def recipients(at, owner, m, **params):
    r = call(at, owner, "GET", f"/v1/crm/mailings/{m['id']}/recipients",
             params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def settled(at, owner, m, n, **params):
    """The recipients once n of them are in a final state."""
    final = {"sent", "failed", "skipped_unsubscribed", "cancelled", "interrupted"}

    def check():
        rs = recipients(at, owner, m, **params)
        return len(rs) == n and all(x["status"] in final for x in rs) and rs
    return wait_for(f"{n} recipients settled", check, within=SEND_WITHIN_S)


def by_email(rs):
    return {x["email"]: x for x in rs}


def body_of(msg, subtype):
    part = msg.get_body(preferencelist=(subtype,))
    return part.get_content() if part else None


# ---------------------------------------------------------------------------
# sending
# ---------------------------------------------------------------------------

def test_a_mailing_reaches_each_contact_of_the_group_rendered_escaped_and_on_the_timeline(
        trellis, smtp):
    server = smtp()
    trio = senders(trellis, server)
    at = At(trio.procs[0])
    owner = signup(at)
    group, clients = group_with_contacts(at, owner, [
        ("Smith & <Sons>", [("Ann \"Annie\" Smith", "ann@smith.example"),
                            ("No Mail Bob", None)]),
        ("Jones Ltd", [("Joe Jones", "joe@jones.example")]),
    ])
    outsider = call(at, owner, "POST", "/v1/crm/clients", json={"name": "Not In Group",
                                                                "kind": "company"}).json()
    call(at, owner, "POST", f"/v1/crm/clients/{outsider['id']}/contacts",
         json={"name": "Outsider", "email": "out@side.example"})
    m = mailing(at, owner, group,
                html="<p>Hello {{contact.name}} of {{client.name}}</p>"
                     "<a href=\"{{unsubscribe_url}}\">unsubscribe</a>")
    assert m["status"] == "scheduled" and m["runs"] == 0

    rs = settled(at, owner, m, 2)
    assert {x["email"]: x["status"] for x in rs} == {"ann@smith.example": "sent",
                                                     "joe@jones.example": "sent"}
    assert all(x["run"] == 1 and x["attempts"] == 1 and x["reply"].startswith("250")
               and x["sent_at"] for x in rs)
    assert not any(k.startswith("_") or k == "token" for k in rs[0])
    wait_for("both messages", lambda: len(server.inbox.addresses()) == 2, within=SEND_WITHIN_S)
    assert server.inbox.addresses() == ["ann@smith.example", "joe@jones.example"]

    (msg,) = server.inbox.to("ann@smith.example")
    assert msg["Subject"] == "News for Smith & <Sons>"
    assert msg["From"] == "crm@trellis.example" and msg["To"] == "ann@smith.example"
    text = body_of(msg, "plain")
    assert text.startswith("Dear Ann \"Annie\" Smith,\nour news.")
    html = body_of(msg, "html")
    assert "<p>Hello Ann &quot;Annie&quot; Smith of Smith &amp; &lt;Sons&gt;</p>" in html
    unsubscribe = msg["List-Unsubscribe"]
    assert unsubscribe.startswith("<http://127.0.0.1:") and "/v1/unsubscribe/" in unsubscribe
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.strip("<>") in text and unsubscribe.strip("<>") in html
    assert "joe@jones.example" not in text

    # the mailing is done, and each client's timeline shows the email
    done = wait_for("the mailing done", lambda: (x := call(at, owner, "GET",
                    f"/v1/crm/mailings/{m['id']}").json())["status"] == "done" and x)
    assert done["runs"] == 1 and done["next_run_at"] is None
    for client in clients:
        r = call(at, owner, "GET", f"/v1/crm/clients/{client['id']}/timeline")
        assert r.status_code == 200, r.text
        emails = [i for i in r.json()["items"] if i["type"] == "interaction"
                  and i["interaction"]["kind"] == "email"]
        assert len(emails) == 1, r.json()
        assert "Winter news" in emails[0]["interaction"]["summary"]
        assert emails[0]["interaction"]["user_id"] == owner.user_id
    stop_cleanly(trio)


def test_a_saved_filter_group_mails_the_clients_its_rule_matches_at_the_time_of_the_run(
        trellis, smtp):
    server = smtp()
    trio = senders(trellis, server)
    at = At(trio.procs[0])
    owner = signup(at)
    r = call(at, owner, "POST", "/v1/crm/groups",
             json={"name": "People", "rule": {"type": "filter", "kind": "person"}})
    assert r.status_code == 201, r.text
    group = r.json()
    for name, kind, address in (("Pat Person", "person", "pat@filter.example"),
                                ("Co Company", "company", "co@filter.example")):
        client = call(at, owner, "POST", "/v1/crm/clients", json={"name": name, "kind": kind}).json()
        r = call(at, owner, "POST", f"/v1/crm/clients/{client['id']}/contacts",
                 json={"name": name, "email": address})
        assert r.status_code == 201, r.text
    m = mailing(at, owner, group)
    (x,) = settled(at, owner, m, 1)
    assert x["email"] == "pat@filter.example" and x["status"] == "sent", x
    wait_for("pat's message", lambda: server.inbox.addresses() == ["pat@filter.example"],
             within=SEND_WITHIN_S)
    assert server.inbox.to("pat@filter.example")[0]["Subject"] == "News for Pat Person"


def test_a_recipient_refused_by_the_server_fails_with_its_reply_and_the_others_arrive(
        trellis, smtp):
    server = smtp(refuse={"gone@bad.example"})
    trio = senders(trellis, server)
    at = At(trio.procs[0])
    owner = signup(at)
    long_name = "Müller-Lüdenscheidt Großhandel für ökologische Bürobedarfsartikel GmbH"
    group, _ = group_with_contacts(at, owner, [
        ("A", [("Good", "good@ok.example"), ("Gone", "gone@bad.example")]),
        (long_name, [("Fine", "fine@ok.example")]),
    ])
    m = mailing(at, owner, group)
    rs = by_email(settled(at, owner, m, 3))
    assert rs["gone@bad.example"]["status"] == "failed"
    assert rs["gone@bad.example"]["reply"].startswith("550")
    assert rs["gone@bad.example"]["attempts"] == 1  # a refusal for good is not retried
    assert rs["good@ok.example"]["status"] == rs["fine@ok.example"]["status"] == "sent"
    assert server.inbox.addresses() == ["fine@ok.example", "good@ok.example"]
    # a long subject of many-byte characters survives its encoded words
    (msg,) = server.inbox.to("fine@ok.example")
    assert msg["Subject"] == "News for " + long_name
    failed = recipients(at, owner, m, status="failed")
    assert [x["email"] for x in failed] == ["gone@bad.example"]


def test_a_server_that_goes_away_mid_run_gets_the_rest_after_retries_none_twice(
        trellis, smtp):
    server = smtp()
    trio = senders(trellis, server, smtp_rate=2, mailing_max_attempts=30)
    at = At(trio.procs[0])
    owner = signup(at)
    people = [(f"Client {i}", [(f"Person {i}", f"p{i}@retry.example")]) for i in range(8)]
    group, _ = group_with_contacts(at, owner, people)
    m = mailing(at, owner, group)
    wait_for("the first arrivals", lambda: len(server.inbox.addresses()) >= 2,
             within=SEND_WITHIN_S)
    server.stop()
    # some sends now find no server: they wait for a retry, saying why
    waiting = wait_for("a recipient waiting for its retry", lambda: [
        x for x in recipients(at, owner, m) if x["status"] == "queued" and x["reply"]],
        within=SEND_WITHIN_S)
    assert waiting[0]["attempts"] >= 1
    server.start()
    rs = settled(at, owner, m, 8)
    # a send cut off between its message and the server's answer (the
    # stop can fall there) is interrupted: perhaps taken, never sent again
    sent = sorted(x["email"] for x in rs if x["status"] == "sent")
    assert all(x["status"] in ("sent", "interrupted") for x in rs), rs
    assert len(sent) >= 7 and any(x["attempts"] > 1 for x in rs), rs
    wait_for("every sent address", lambda: set(sent) <= set(server.inbox.addresses()),
             within=SEND_WITHIN_S)
    got = server.inbox.addresses()
    assert len(got) == len(set(got)) and len(got) <= 8, got


def test_a_sender_killed_after_the_server_took_the_message_is_not_sent_again(trellis, smtp):
    # the server keeps the message, then waits before its 250: the process
    # is killed in between, with the recipient claimed
    server = smtp(slow=60)
    trio = senders(trellis, server, smtp_timeout_ms=120000, job_visibility_ms=2000)
    doomed = trio.procs[0]
    at = At(doomed)
    owner = signup(at)
    group, _ = group_with_contacts(at, owner, [("K", [("Kim", "kim@killed.example")])])
    m = mailing(at, owner, group)
    wait_for("the message at the server", lambda: server.inbox.addresses(), within=SEND_WITHIN_S)
    (x,) = recipients(at, owner, m)
    assert x["status"] == "sending" and x["attempts"] == 1, x
    doomed.kill()
    # another process takes the job over; once the claim is stale it says
    # what happened instead of sending a second copy
    healthy, _ = trio.start(smtp_timeout_ms=1000, mailing_max_attempts=40)
    at = At(healthy)
    (x,) = settled(at, owner, m, 1)
    assert x["status"] == "interrupted" and x["attempts"] == 1, x
    assert server.inbox.addresses() == ["kim@killed.example"]


def test_a_send_whose_answer_never_comes_is_interrupted_not_sent_twice(trellis, smtp):
    server = smtp(slow=8)  # longer than the sender waits for the answer to the message
    trio = senders(trellis, server, smtp_timeout_ms=1000)
    at = At(trio.procs[0])
    owner = signup(at)
    group, _ = group_with_contacts(at, owner, [("W", [("Wes", "wes@wait.example")])])
    m = mailing(at, owner, group)
    (x,) = settled(at, owner, m, 1)
    assert x["status"] == "interrupted" and "no answer" in x["reply"], x
    assert server.inbox.addresses() == ["wes@wait.example"]


def test_several_processes_send_each_recipient_once_and_together_keep_the_rate(trellis, smtp):
    server = smtp()
    rate = 2
    trio = senders(trellis, server, n=3, smtp_rate=rate)
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    people = [(f"Client {i}", [(f"Person {i}", f"p{i}@once.example"),
                               (f"Twin {i}", f"P{i}@Once.example")]) for i in range(9)]
    group, _ = group_with_contacts(at[0], owner, people)
    m = mailing(at[0], owner, group)
    # pausing and resuming enqueues every waiting recipient again, from
    # each process: duplicate send jobs race for the same recipients
    for i in range(3):
        for action in ("pause", "resume"):
            r = call(at[i], owner, "POST", f"/v1/crm/mailings/{m['id'].upper()}/{action}")
            assert r.status_code in (200, 409), r.text
    r = call(at[1], owner, "GET", f"/v1/crm/mailings/{m['id']}")
    if r.json()["status"] == "paused":
        assert call(at[2], owner, "POST", f"/v1/crm/mailings/{m['id']}/resume").status_code == 200
    rs = settled(at[2], owner, m, 9)
    assert all(x["status"] == "sent" for x in rs), rs
    expected = sorted(f"p{i}@once.example" for i in range(9))
    wait_for("every address", lambda: len(server.inbox.addresses()) >= 9, within=SEND_WITHIN_S)
    assert server.inbox.addresses() == expected  # one each: the twins are one address
    times = server.inbox.times()
    # 9 messages at 2 a second across all processes: their slots are 4 s
    # apart (a second of slack for the first send's slower start); six job
    # threads unthrottled would send them in well under one
    assert times[-1] - times[0] >= (9 - 1) / rate - 1.0, times


def test_cancelling_mid_run_stops_the_waiting_recipients_and_sends_none_of_them(
        trellis, smtp):
    server = smtp()
    trio = senders(trellis, server, smtp_rate=1)
    at = At(trio.procs[0])
    owner = signup(at)
    people = [(f"Client {i}", [(f"Person {i}", f"c{i}@cancel.example")]) for i in range(6)]
    group, _ = group_with_contacts(at, owner, people)
    m = mailing(at, owner, group)
    wait_for("a first arrival", lambda: server.inbox.addresses(), within=SEND_WITHIN_S)
    r = call(at, owner, "POST", f"/v1/crm/mailings/{m['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    rs = settled(at, owner, m, 6)
    sent = sorted(x["email"] for x in rs if x["status"] == "sent")
    cancelled = [x for x in rs if x["status"] == "cancelled"]
    assert sent and cancelled and len(sent) + len(cancelled) == 6, rs
    wait_for("the sent ones", lambda: server.inbox.addresses() == sent, within=SEND_WITHIN_S)
    check_problem(call(at, owner, "POST", f"/v1/crm/mailings/{m['id']}/cancel"), 409)


def test_a_repeating_mailing_runs_again_and_stops_when_cancelled(trellis, smtp):
    server = smtp()
    trio = senders(trellis, server, mailing_repeat_min_s=1)
    at = At(trio.procs[0])
    owner = signup(at)
    group, _ = group_with_contacts(at, owner, [("Rep", [("Rita", "rita@repeat.example")])])
    m = mailing(at, owner, group, repeat={"unit": "second", "every": 3})
    assert m["repeat"] == {"unit": "second", "every": 3}
    wait_for("a second run", lambda: len(server.inbox.to("rita@repeat.example")) >= 2,
             within=SEND_WITHIN_S)
    # the recipient is marked sent after the SMTP server took the message
    wait_for("both runs recorded as sent",
             lambda: sorted(x["run"] for x in recipients(at, owner, m, status="sent"))[:2] == [1, 2],
             within=SEND_WITHIN_S)
    r = call(at, owner, "POST", f"/v1/crm/mailings/{m['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    check_problem(call(at, owner, "POST", f"/v1/crm/mailings/{m['id']}/resume"), 409)
    check_problem(call(at, owner, "PATCH", f"/v1/crm/mailings/{m['id']}",
                       json={"name": "again"}), 409)


# ---------------------------------------------------------------------------
# unsubscribing
# ---------------------------------------------------------------------------

def test_the_unsubscribe_link_takes_one_click_and_later_runs_skip_the_address(trellis, smtp):
    server = smtp()
    trio = senders(trellis, server)
    at = At(trio.procs[0])
    owner = signup(at)
    group, _ = group_with_contacts(at, owner, [
        ("U", [("Uma", "uma@unsub.example"), ("Val", "val@unsub.example")])])
    m = mailing(at, owner, group)
    settled(at, owner, m, 2)
    wait_for("both", lambda: len(server.inbox.addresses()) == 2, within=SEND_WITHIN_S)
    (msg,) = server.inbox.to("uma@unsub.example")
    link = msg["List-Unsubscribe"].strip("<>")

    # the link is public; GET only shows the page (mail scanners follow links)
    r = requests.get(link, timeout=30)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "<form method=\"post\"" in r.text
    r = call(at, owner, "GET", "/v1/crm/unsubscribes")
    assert r.json()["items"] == []
    # RFC 8058: the mail client's one-click POST
    r = requests.post(link, data="List-Unsubscribe=One-Click", timeout=30,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert requests.post(link, data="List-Unsubscribe=One-Click", timeout=30).status_code == 200
    r = call(at, owner, "GET", "/v1/crm/unsubscribes")
    (entry,) = r.json()["items"]
    assert entry["email"] == "uma@unsub.example" and entry["source"] == "link"
    assert entry["mailing_id"] == m["id"]
    # a link that is not one: 404, nothing added
    for bad in (link[:-3] + "abc", link.rsplit("/", 1)[0] + "/" + "0" * 24 + "x" * 43):
        assert requests.post(bad, timeout=30).status_code == 404
        assert requests.get(bad, timeout=30).status_code == 404

    second = mailing(at, owner, group, name="Spring news")
    rs = by_email(settled(at, owner, second, 2))
    assert rs["uma@unsub.example"]["status"] == "skipped_unsubscribed"
    assert rs["val@unsub.example"]["status"] == "sent"
    wait_for("val again", lambda: len(server.inbox.to("val@unsub.example")) == 2,
             within=SEND_WITHIN_S)
    assert len(server.inbox.to("uma@unsub.example")) == 1

    # removing the entry lets mailings reach the address again
    assert call(at, owner, "DELETE", f"/v1/crm/unsubscribes/{entry['id']}").status_code == 204
    third = mailing(at, owner, group, name="Summer news")
    rs = by_email(settled(at, owner, third, 2))
    assert rs["uma@unsub.example"]["status"] == "sent"


# ---------------------------------------------------------------------------
# TLS and AUTH
# ---------------------------------------------------------------------------

def self_signed(tmpdir):
    cert, key = os.path.join(tmpdir, "cert.pem"), os.path.join(tmpdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_starttls_and_auth_carry_the_mail_and_the_password_stays_out_of_the_logs(
        trellis, smtp, tmp_path):
    import ssl
    cert, key = self_signed(str(tmp_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    password = "s3cret-smtp-pass-" + os.urandom(4).hex()
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"mailer" and auth_data.password == password.encode()
        logins.append(ok)
        return AuthResult(success=ok)

    server = smtp(tls_context=context, require_starttls=True, authenticator=authenticator,
                  auth_required=True)
    trio = senders(trellis, server, smtp_starttls="required", smtp_ca_file=cert,
                   smtp_user="mailer", smtp_password=password)
    at = At(trio.procs[0])
    owner = signup(at)
    group, _ = group_with_contacts(at, owner, [("T", [("Tess", "tess@tls.example")])])
    m = mailing(at, owner, group)
    (x,) = settled(at, owner, m, 1)
    assert x["status"] == "sent", x
    assert server.inbox.addresses() == ["tess@tls.example"] and logins == [True]
    stop_cleanly(trio)
    for p in trio.procs:
        assert password not in p.output()


# ---------------------------------------------------------------------------
# bad input, permissions, other tenants (the session's server: no SMTP)
# ---------------------------------------------------------------------------

@pytest.fixture
def owner_group(stack):
    owner = signup(stack)
    r = call(stack, owner, "POST", "/v1/crm/groups", json={"name": "G", "rule": {"type": "static"}})
    assert r.status_code == 201, r.text
    return owner, r.json()


def fields_of(r):
    return {e["field"]: e["message"] for e in r.json().get("errors", [])}


@pytest.mark.parametrize("change, field, says", [
    ({"subject": "Hi {{client.nmae}}"}, "subject", "{{client.nmae}}"),
    ({"text": "Dear {{ contact.surname }}"}, "text", "{{contact.surname}}"),
    ({"html": "<p>{{contact.name</p>"}, "html", "not closed"),
    ({"subject": None}, "subject", ""),
    ({"group_id": "0" * 24}, "group_id", ""),
    ({"group_id": "not-an-id"}, "group_id", ""),
    ({"repeat": {"unit": "fortnight", "every": 1}}, "repeat", ""),
    ({"repeat": {"unit": "day", "every": 0}}, "repeat", ""),
    ({"repeat": {"unit": "second", "every": 5}}, "repeat", "at most every 3600"),
    ({"repeat": "daily"}, "repeat", ""),
    ({"send_at": "tomorrow"}, "send_at", ""),
    ({"status": "done"}, "status", ""),
])
def test_a_bad_mailing_is_422_naming_the_field_and_makes_nothing(stack, owner_group, change,
                                                                 field, says):
    owner, group = owner_group
    body = {"name": "N", "subject": "S {{client.name}}", "text": "T", "group_id": group["id"]}
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    r = call(stack, owner, "POST", "/v1/crm/mailings", json=body)
    check_problem(r, 422)
    assert field in fields_of(r), r.text
    assert says in fields_of(r)[field], r.text
    assert call(stack, owner, "GET", "/v1/crm/mailings").json()["items"] == []


def test_another_tenants_group_mailing_and_unsubscribe_are_not_found(stack, owner_group):
    owner, group = owner_group
    m = mailing(stack, owner, group, send_at="2099-01-01T00:00:00Z")
    r = call(stack, owner, "POST", "/v1/crm/unsubscribes", json={"email": "No@Where.example"})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["email"] == "no@where.example" and entry["source"] == "user"
    check_problem(call(stack, owner, "POST", "/v1/crm/unsubscribes",
                       json={"email": "no@where.example"}), 409)
    for spelling in spellings(m["id"]):
        assert call(stack, owner, "GET", f"/v1/crm/mailings/{spelling}").status_code == 200
        assert call(stack, owner, "GET",
                    f"/v1/crm/mailings/{spelling}/recipients").status_code == 200

    other = signup(stack)
    for spelling in spellings(m["id"]):
        check_problem(call(stack, other, "GET", f"/v1/crm/mailings/{spelling}"), 404)
        check_problem(call(stack, other, "GET", f"/v1/crm/mailings/{spelling}/recipients"), 404)
        for action in ("pause", "resume", "cancel"):
            check_problem(call(stack, other, "POST", f"/v1/crm/mailings/{spelling}/{action}"),
                          404)
        check_problem(call(stack, other, "PATCH", f"/v1/crm/mailings/{spelling}",
                           json={"name": "mine"}), 404)
    check_problem(call(stack, other, "DELETE", f"/v1/crm/unsubscribes/{entry['id']}"), 404)
    assert call(stack, other, "GET", "/v1/crm/unsubscribes").json()["items"] == []
    r = call(stack, other, "POST", "/v1/crm/mailings",
             json={"name": "N", "subject": "S", "text": "T", "group_id": group["id"]})
    check_problem(r, 422)
    assert "group_id" in fields_of(r)
    # nothing of it changed
    after = call(stack, owner, "GET", f"/v1/crm/mailings/{m['id']}").json()
    assert after["name"] == m["name"] and after["version"] == m["version"]
    assert call(stack, owner, "GET", "/v1/crm/unsubscribes").json()["items"] == [entry]


def test_state_changes_only_from_the_states_they_leave(stack, owner_group):
    owner, group = owner_group
    m = mailing(stack, owner, group, send_at="2099-01-01T00:00:00Z")
    check_problem(call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/resume"), 409)
    r = call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    check_problem(call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/pause"), 409)
    r = call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/resume")
    assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
    r = call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    check_problem(call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/cancel"), 409)
    check_problem(call(stack, owner, "GET", f"/v1/crm/mailings/{m['id']}/recipients",
                       params={"status": "lost"}), 422)
    check_problem(call(stack, owner, "GET", f"/v1/crm/mailings/{m['id']}/recipients",
                       params={"run": "0"}), 422)
    r = call(stack, owner, "POST", f"/v1/crm/mailings/{m['id']}/pause", json={"x": 1})
    assert r.status_code in (400, 409, 422), r.text


@pytest.mark.parametrize("role, reads, writes", [
    ("admin", True, True),
    ("manager", True, True),
    ("sales", True, False),
    ("accountant", False, False),
    ("warehouse", False, False),
    ("employee", False, False),
])
def test_who_may_read_and_write_mailings(stack, owner_group, role, reads, writes):
    owner, group = owner_group
    m = mailing(stack, owner, group, send_at="2099-01-01T00:00:00Z")
    who = user_session(stack, owner, [role])
    body = {"name": "N", "subject": "S", "text": "T", "group_id": group["id"]}
    for path in ("/v1/crm/mailings", f"/v1/crm/mailings/{m['id']}",
                 f"/v1/crm/mailings/{m['id']}/recipients", "/v1/crm/unsubscribes"):
        r = call(stack, who, "GET", path)
        assert r.status_code == (200 if reads else 403), (path, r.text)
    r = call(stack, who, "POST", "/v1/crm/mailings", json=body)
    assert r.status_code == (201 if writes else 403), r.text
    r = call(stack, who, "POST", f"/v1/crm/mailings/{m['id']}/pause")
    assert r.status_code == (200 if writes else 403), r.text
    r = call(stack, who, "POST", "/v1/crm/unsubscribes", json={"email": f"{role}@x.example"})
    assert r.status_code == (201 if writes else 403), r.text
    if not writes:
        after = call(stack, owner, "GET", f"/v1/crm/mailings/{m['id']}").json()
        assert after["status"] == "scheduled" and after["version"] == m["version"]
