"""What the sending domain publishes in DNS for receivers to trust its email: SPF, DKIM, DMARC.

``domain_findings`` reads the three records with dnspython and says, record by record, what is
in place, what is missing and what is wrong (``manage.py check_sending_domain`` prints it).
Gmail and Yahoo ask bulk senders for all three. The SPF check evaluates the record for the SMTP
server's addresses as far as it can (ip4, ip6, a, mx, include, redirect; not exists, ptr or
macros), within RFC 7208's limit of 10 DNS lookups. When no DNS server answers it raises
``DnsUnreachable``: nothing is concluded from silence.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
from django.conf import settings
from django.utils.translation import gettext as _
from dkim.crypto import parse_public_key

from nurturing.dkim_signing import DkimSettingsError, public_key_record, signer

OK, WARNING, MISSING, ERROR = "ok", "warning", "missing", "error"
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: more, and receivers answer "permerror"
SMTP_BACKENDS = ("nurturing.smtp.EmailBackend", "django.core.mail.backends.smtp.EmailBackend")


@dataclass(frozen=True)
class Finding:
    record: str  # "SPF", "DKIM" or "DMARC"
    level: str  # OK, WARNING, MISSING or ERROR
    message: str


class DnsUnreachable(Exception):
    """No DNS server answered (none configured, a timeout, refused): nothing can be said."""


def resolver_for(nameserver: str = "", timeout: float = 5.0) -> dns.resolver.Resolver:
    """The system's resolver, or one asking only ``nameserver`` (``host`` or ``host:port``,
    ``[v6]:port``)."""
    if nameserver:
        host, port = nameserver, 53
        if nameserver.startswith("["):
            host, _bracket, rest = nameserver[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif nameserver.count(":") == 1:
            host, _colon, number = nameserver.partition(":")
            port = int(number)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration as error:
            raise DnsUnreachable(_("no DNS server is configured on this machine")) from error
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def domain_findings(
    resolver: dns.resolver.Resolver, domain: str, *, selector: str = ""
) -> list[Finding]:
    domain = domain.lower().rstrip(".")
    return [
        *spf_findings(resolver, return_path_domain(domain)),
        *dkim_findings(resolver, domain, selector=selector),
        *dmarc_findings(resolver, domain),
    ]


def return_path_domain(domain: str) -> str:
    """The domain receivers check SPF on: the envelope sender's, which is the bounce address's
    when one is set (``NURTURING_BOUNCE_ADDRESS``, a VERP return path), else the From's."""
    bounce = settings.NURTURING_BOUNCE_ADDRESS
    return bounce.rpartition("@")[2].lower().rstrip(".") if "@" in bounce else domain


def _lookup(resolver: dns.resolver.Resolver, name: str, kind: str) -> list[Any]:
    """The answer's records; none when the name or the type does not exist."""
    try:
        return list(resolver.resolve(name.rstrip(".") + ".", kind, search=False))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.resolver.NoNameservers as error:
        raise DnsUnreachable(_("no DNS server answered for %(name)s") % {"name": name}) from error
    except (dns.exception.DNSException, OSError) as error:  # timeouts, sockets refused
        raise DnsUnreachable(
            _("no answer from the DNS server for %(name)s (%(error)s)")
            % {"name": name, "error": type(error).__name__}
        ) from error


def txt_records(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """TXT records, each record's strings joined (a DKIM key is longer than one string)."""
    return [
        b"".join(record.strings).decode("utf-8", errors="replace")
        for record in _lookup(resolver, name, "TXT")
    ]


def tags(record: str) -> dict[str, str]:
    """A tag=value list (DKIM, DMARC) as a dict: names lower-cased, whitespace dropped."""
    pairs = (part.partition("=") for part in record.split(";") if "=" in part)
    return {name.strip().lower(): "".join(value.split()) for name, _eq, value in pairs}


# --- SPF --------------------------------------------------------------------------------------


def spf_records(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    return [
        " ".join(record.split())
        for record in txt_records(resolver, domain)
        if record.lower() == "v=spf1" or record.lower().startswith("v=spf1 ")
    ]


def spf_findings(resolver: dns.resolver.Resolver, domain: str) -> list[Finding]:
    records = spf_records(resolver, domain)
    values = {"domain": domain, "count": len(records), "record": records[0] if records else ""}
    if not records:
        message = _(
            "No SPF record at %(domain)s: publish a TXT record naming the servers that send for "
            "it, e.g. \"v=spf1 ip4:<your server's address> -all\" (or your provider's include:)."
        )
        return [Finding("SPF", MISSING, message % values)]
    if len(records) > 1:
        message = _(
            "%(count)s SPF records at %(domain)s: receivers treat more than one as an error "
            "(permerror). Merge them into one."
        )
        return [Finding("SPF", ERROR, message % values)]
    terms = records[0].split()[1:]
    values["all"] = last = next(
        (t.lower() for t in reversed(terms) if t.lower().endswith("all")), ""
    )
    if last in ("all", "+all"):
        level = ERROR
        message = _(
            "The SPF record ends in %(all)s: it lets anyone send as %(domain)s. End it with -all "
            "or ~all."
        )
    elif last == "?all":
        level = WARNING
        message = _(
            "The SPF record ends in ?all (neutral): receivers learn nothing from it. End it with "
            "-all or ~all. Record: %(record)s"
        )
    elif not last and not any(term.lower().startswith("redirect=") for term in terms):
        level = WARNING
        message = _(
            "The SPF record has no -all or ~all at the end: other senders are not refused. "
            "Record: %(record)s"
        )
    else:
        level, message = OK, _("SPF record found: %(record)s")
    return [Finding("SPF", level, message % values), *_smtp_server(resolver, domain, records[0])]


def _smtp_server(resolver: dns.resolver.Resolver, domain: str, record: str) -> list[Finding]:
    """Whether the SMTP server's addresses are allowed (with an ESP, its documentation names
    the include: to add: nothing to evaluate here)."""
    if settings.EMAIL_BACKEND not in SMTP_BACKENDS:
        return []
    host = settings.EMAIL_HOST
    public = [address for address in _addresses(resolver, host) if address.is_global]
    if not public:
        message = _(
            "Cannot tell whether the SMTP server is allowed: EMAIL_HOST (%(host)s) is not a "
            "public address; the address your mail leaves from must be in the record."
        )
        return [Finding("SPF", WARNING, message % {"host": host})]
    findings = []
    for address in public:
        allowed = spf_allows(resolver, domain, address, record=record, budget=[SPF_LOOKUP_LIMIT])
        if allowed is None:
            level = WARNING
            message = _(
                "Cannot tell whether the SMTP server %(host)s (%(address)s) is allowed: the record "
                "uses what this check does not evaluate (exists, ptr, macros) or needs more "
                "than 10 DNS lookups."
            )
        elif allowed:
            level, message = OK, _("The SMTP server %(host)s (%(address)s) is allowed by it.")
        else:
            level = ERROR
            message = _(
                "The SMTP server %(host)s (%(address)s) is not allowed by it: receivers will see "
                "an SPF failure. Add it (ip4:, ip6:, or your provider's include:)."
            )
        findings.append(Finding("SPF", level, message % {"host": host, "address": address}))
    return findings


def _addresses(resolver: dns.resolver.Resolver, host: str) -> list[Any]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    found = [*_lookup(resolver, host, "A"), *_lookup(resolver, host, "AAAA")]
    return [ipaddress.ip_address(record.address) for record in found]


def spf_allows(
    resolver: dns.resolver.Resolver,
    domain: str,
    address: Any,
    *,
    record: str | None = None,
    budget: list[int],
) -> bool | None:
    """Whether ``domain``'s SPF record gives ``address`` a "pass"; None when this cannot be
    told. ``budget`` counts the DNS lookups left (shared through include: and redirect=)."""
    if record is None:
        records = spf_records(resolver, domain)
        if len(records) != 1:
            return None  # an include: without exactly one record is a permerror
        record = records[0]
    redirect = ""
    for term in record.split()[1:]:
        if "%{" in term:
            return None
        qualifier = term[0] if term[0] in "+-~?" else "+"
        term = term.lstrip("+-~?").lower()
        if term.startswith("redirect="):
            redirect = term.removeprefix("redirect=")
            continue
        mechanism, _colon, value = term.partition(":")
        mechanism, _slash, cidr = mechanism.partition("/")
        if mechanism == "all":
            return qualifier == "+"
        if mechanism in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                return None
            if network.version == address.version and address in network:
                return qualifier == "+"
            continue
        if mechanism in ("exists", "ptr"):
            return None
        if mechanism not in ("a", "mx", "include"):
            continue  # modifiers such as exp=
        budget[0] -= 1
        if budget[0] < 0:
            return None
        target, _slash, value_cidr = value.partition("/")
        target = target or domain
        if mechanism == "include":
            included = spf_allows(resolver, target, address, budget=budget)
            if included is None or included:
                return None if included is None else qualifier == "+"
            continue
        hosts = [target]
        if mechanism == "mx":
            hosts = [str(mx.exchange).rstrip(".") for mx in _lookup(resolver, target, "MX")]
        # "a/24//64": the prefix lengths for IPv4 and IPv6 addresses.
        v4_bits, _slashes, v6_bits = (cidr or value_cidr).partition("//")
        for host in hosts:
            for found in _addresses(resolver, host):
                bits = (v4_bits if found.version == 4 else v6_bits) or found.max_prefixlen
                network = ipaddress.ip_network(f"{found}/{bits}", strict=False)
                if found.version == address.version and address in network:
                    return qualifier == "+"
    if redirect:
        budget[0] -= 1
        return None if budget[0] < 0 else spf_allows(resolver, redirect, address, budget=budget)
    return False


# --- DKIM -------------------------------------------------------------------------------------


def dkim_findings(resolver: dns.resolver.Resolver, domain: str, *, selector: str) -> list[Finding]:
    findings = []
    try:
        configured = signer()
    except DkimSettingsError as error:
        configured = None
        message = _("The DKIM settings cannot sign: %(error)s") % {"error": error}
        findings.append(Finding("DKIM", ERROR, message))
    selector = selector or settings.DKIM_SELECTOR
    if not selector:
        message = _(
            "DKIM signing is off (DKIM_SELECTOR and a private key are not set): messages leave "
            'unsigned. Generate a key (README, "DKIM, SPF and DMARC"), set DKIM_SELECTOR and '
            "DKIM_PRIVATE_KEY_FILE, then publish the record this command shows."
        )
        return [*findings, Finding("DKIM", MISSING, message)]
    name = f"{selector}._domainkey.{domain}"
    records = [record for record in txt_records(resolver, name) if "p=" in record]
    values: dict[str, Any] = {"name": name, "count": len(records)}
    publish = ""
    if configured is not None:
        values.update(record=public_key_record(configured.key), bits=configured.key.key_size)
        publish = " " + _("Publish this TXT record at %(name)s: %(record)s")
    published = tags(records[0]) if len(records) == 1 else {}
    level = ERROR
    if not records:
        level, message = MISSING, _("No DKIM record at %(name)s.") + publish
    elif len(records) > 1:
        message = _("%(count)s DKIM records at %(name)s: keep one.")
    elif not published.get("p"):
        message = _("The DKIM record at %(name)s is revoked (empty p=).")
    elif published.get("k", "rsa") != "rsa":
        values["kind"] = published["k"]
        level = WARNING
        message = _("The DKIM record at %(name)s holds a %(kind)s key: LeadFunnel signs with RSA.")
    elif (modulus := _modulus(published["p"])) is None:
        message = _("The DKIM record at %(name)s does not hold a readable public key (p=).")
    elif configured is None:
        level = WARNING
        message = _(
            "A DKIM record exists at %(name)s, but DKIM signing is not on here: messages leave "
            "unsigned."
        )
    elif modulus != configured.key.public_key().public_numbers().n:
        message = _(
            "The DKIM record at %(name)s does not match the configured private key: receivers "
            "will fail every signature."
        )
        message += publish
    else:
        level = OK
        message = _(
            "The DKIM record at %(name)s matches the configured private key (%(bits)s bits)."
        )
    return [*findings, Finding("DKIM", level, message % values)]


def _modulus(public_key: str) -> int | None:
    """The RSA modulus of a p= value (SubjectPublicKeyInfo or bare RSAPublicKey, as dkimpy
    reads both), None when it is not one."""
    try:
        return parse_public_key(base64.b64decode(public_key))["modulus"]
    except Exception:  # dkimpy's ASN.1 errors, bad base64: the record is damaged either way
        return None


# --- DMARC ------------------------------------------------------------------------------------


def dmarc_findings(resolver: dns.resolver.Resolver, domain: str) -> list[Finding]:
    # A subdomain without a record of its own is under its organisational domain's (without
    # the public suffix list, the parents down to two labels are asked).
    labels = domain.split(".")
    for start in range(max(1, len(labels) - 1)):
        name = "_dmarc." + ".".join(labels[start:])
        records = [
            record
            for record in txt_records(resolver, name)
            if "".join(record.split()).lower().startswith("v=dmarc1")
        ]
        if records:
            break
    values = {"domain": domain, "name": name, "count": len(records)}
    if not records:
        message = _(
            'No DMARC record at _dmarc.%(domain)s: publish a TXT record such as "v=DMARC1; '
            'p=none; rua=mailto:dmarc@%(domain)s", read the reports, then move to p=quarantine '
            "or p=reject."
        )
        return [Finding("DMARC", MISSING, message % values)]
    if len(records) > 1:
        message = _("%(count)s DMARC records at %(name)s: receivers ignore them all. Keep one.")
        return [Finding("DMARC", ERROR, message % values)]
    policy = tags(records[0])
    values.update(policy=policy.get("p", "").lower(), record=records[0], rua=policy.get("rua"))
    if values["policy"] not in ("none", "quarantine", "reject"):
        message = _(
            "The DMARC record at %(name)s has no valid policy (p=none, quarantine or reject): "
            "receivers ignore it. Record: %(record)s"
        )
        return [Finding("DMARC", ERROR, message % values)]
    level = OK
    message = _("DMARC record at %(name)s, policy p=%(policy)s.")
    if values["policy"] == "none":
        level = WARNING
        message = _(
            "DMARC record at %(name)s with p=none: receivers only report (enough for Gmail and "
            "Yahoo's bulk-sender rules); p=quarantine or p=reject also protects the domain "
            "from forgery."
        )
    findings = [Finding("DMARC", level, message % values)]
    if values["rua"]:
        findings.append(Finding("DMARC", OK, _("Aggregate reports go to %(rua)s.") % values))
    else:
        message = _(
            "The DMARC record has no rua= address: no aggregate reports, so you will not see "
            "who sends as your domain."
        )
        findings.append(Finding("DMARC", WARNING, message))
    return findings
