#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""conformance.vault: Microsoft's Key Vault SDK against `atrest vault`.

Starts `atrest idp serve` and two `atrest vault serve` processes (vault
"contoso" with purge protection, vault "fabrikam" without, each the default
vault of its own server and state dir) on loopback with a fresh CA, provisions
directories, applications, service principals, vaults and access policies
with the admin CLIs, then drives the vaults with Debian's python3-azure
(azure-keyvault-keys 4.8.0b3, azure-identity 1.13.0b2, azure-core 1.26.3),
unchanged: key creation, get, paging, update, rotation and rotation policies
(with the vault's test clock advanced), soft delete, recover, purge, backup and
restore, wrap/unwrap, encrypt/decrypt, sign/verify (checked locally with
`cryptography` too), and the error cases (not found, foreign directory, access
policy, firewall, throttling, api-version) as the SDK's exception types.

Credential: azure-identity's ClientSecretCredential(tenant, client, secret,
authority=IDP, instance_discovery=False) -- the real one, it works against our
identity server (conformance.idp checks that too); only the foreign-directory
case uses a fixed-token credential, because ClientSecretCredential refuses by
itself to fetch a token for a tenant other than the one the vault's challenge
names, and the point there is what the vault does with such a token.

Run with /usr/bin/python3. Prints "N passed, N failed" last; exit 1 on any
failure, 77 when the SDK is missing. Every wait is bounded, every network call
goes to 127.0.0.1 with a timeout, servers are killed and the temp dir removed
at exit.
"""
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

passed = 0
failed = 0
failures = []

SCOPE = "https://vault.azure.net/.default"
API = "7.4-preview.1"
DAY = 86400


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        failures.append(name)
        print("FAIL " + name + (": " + str(detail)[:600] if detail else ""))


def crash(name, e):
    """An unexpected exception inside a group of checks: one failure, keep going."""
    check(name + " (no unexpected exception)", False, repr(e)[:600])


def codes(e):
    """The error code and innererror code of an azure-core HttpResponseError."""
    out = set()
    err = getattr(e, "error", None)
    if err is not None:
        out.add(err.code)
        inner = getattr(err, "innererror", None) or {}
        if isinstance(inner, dict):
            out.add(inner.get("code"))
    out.discard(None)
    return out


def has_code(e, code):
    return code in codes(e) or code in str(e)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ATR_BIN")
    if not binary:
        print("usage: vault_conformance.py path/to/atrest")
        return 2
    try:
        import requests
        from azure.core.credentials import AccessToken
        from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                           ResourceExistsError, ResourceNotFoundError)
        from azure.identity import ClientSecretCredential
        from azure.keyvault.keys import (KeyClient, KeyRotationLifetimeAction,
                                         KeyRotationPolicy, KeyRotationPolicyAction)
        from azure.keyvault.keys.crypto import (CryptographyClient, EncryptionAlgorithm,
                                                KeyWrapAlgorithm, SignatureAlgorithm)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
    except ImportError as e:
        print("skipping: " + str(e))
        return 77

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="atr-vault-conf-")
    procs = []
    logs = {}

    def start(tag, args):
        """Starts `atrest ARGS`, returns its URL (first stdout line) or None (10 s bound)."""
        out = open(os.path.join(tmp, tag + ".out"), "w+")
        err = open(os.path.join(tmp, tag + ".err"), "w+")
        logs[tag] = err.name
        proc = subprocess.Popen([binary] + args, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out.seek(0)
            line = out.readline().strip()
            if line.startswith("https://127.0.0.1:"):
                return line
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        err.seek(0)
        print("%s did not print its URL; stderr:\n%s" % (tag, err.read()[-3000:]))
        return None

    def run(*args):
        r = subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("atrest %s: exit %d: %s" % (" ".join(args[:3]), r.returncode,
                                                           r.stderr.strip()[:400]))
        return r.stdout

    try:
        tls = os.path.join(tmp, "tls")
        run("cert", "--dir", tls, "--host", "127.0.0.1", "--host", "localhost")
        ca = os.path.join(tls, "ca.pem")
        cert, key = os.path.join(tls, "server.pem"), os.path.join(tls, "server.key")
        os.environ["REQUESTS_CA_BUNDLE"] = ca
        os.environ["SSL_CERT_FILE"] = ca
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                  "all_proxy"):
            os.environ.pop(k, None)
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

        # ---------------------------------------------------------------- identity
        idp_dir = os.path.join(tmp, "idp")
        idp = start("idp", ["idp", "serve", "--dir", idp_dir, "--cert", cert, "--key", key,
                            "--port", "0"])
        check("identity server prints its URL", idp is not None)
        if idp is None:
            raise RuntimeError("identity server did not start")
        iadm = ["--url", idp, "--ca", ca, "--admin-secret-file",
                os.path.join(idp_dir, "admin.secret")]

        def idp_cli(a, b, *rest):
            return json.loads(run("idp", a, b, *iadm, *rest))

        tid = idp_cli("directory", "create", "--name", "Contoso")["id"]
        tid2 = idp_cli("directory", "create", "--name", "Fabrikam")["id"]

        def principal(tenant, name):
            app = idp_cli("app", "create", "--tenant", tenant, "--name", name)
            sp = idp_cli("sp", "create", "--tenant", tenant, "--app-id", app["appId"])
            return app["appId"], app["secret"], sp["id"]

        app_id, secret, oid = principal(tid, "byok")          # the main caller
        w_app, w_secret, w_oid = principal(tid, "worker")     # access-policy cases
        f_app, f_secret, f_oid = principal(tid2, "foreign")   # another directory

        # ------------------------------------------------------------------ vaults
        va_dir, vb_dir = os.path.join(tmp, "va"), os.path.join(tmp, "vb")
        url_a = start("vault-a", ["vault", "serve", "--dir", va_dir, "--cert", cert, "--key", key,
                                  "--port", "0", "--idp", idp, "--ca", ca, "--default-vault",
                                  "contoso", "--test-mode"])
        url_b = start("vault-b", ["vault", "serve", "--dir", vb_dir, "--cert", cert, "--key", key,
                                  "--port", "0", "--idp", idp, "--ca", ca, "--default-vault",
                                  "fabrikam", "--test-mode"])
        check("vault servers print their URLs", url_a is not None and url_b is not None)
        if url_a is None or url_b is None:
            raise RuntimeError("vault servers did not start")
        adm_a = ["--url", url_a, "--ca", ca, "--admin-secret-file",
                 os.path.join(va_dir, "admin.secret")]
        adm_b = ["--url", url_b, "--ca", ca, "--admin-secret-file",
                 os.path.join(vb_dir, "admin.secret")]

        def va(*args):
            return run("vault", *args, *adm_a)

        def vb(*args):
            return run("vault", *args, *adm_b)

        va("create", "contoso", "--directory", tid, "--purge-protection", "--retention", "90")
        vb("create", "fabrikam", "--directory", tid, "--retention", "7")
        va("policy", "set", "contoso", "--object-id", oid, "--permissions", "all")
        vb("policy", "set", "fabrikam", "--object-id", oid, "--permissions", "all")
        base_perms = "get,list,wrapKey,unwrapKey"
        va("policy", "set", "contoso", "--object-id", w_oid, "--permissions", base_perms)

        # ------------------------------------------------------------- SDK clients
        # bounded: 5 s to connect, 30 s per read, at most 2 retries
        common = dict(verify_challenge_resource=False, connection_verify=ca,
                      connection_timeout=5, read_timeout=30, retry_total=2)
        cred = ClientSecretCredential(tid, app_id, secret, authority=idp,
                                      instance_discovery=False, connection_verify=ca)
        w_cred = ClientSecretCredential(tid, w_app, w_secret, authority=idp,
                                        instance_discovery=False, connection_verify=ca)
        kc = KeyClient(url_a, cred, **common)
        kb = KeyClient(url_b, cred, **common)

        def remote(key_id, credential=cred):
            # A CryptographyClient that could read the key wraps, encrypts and verifies
            # locally with the public key. _keys_get_forbidden=True is the state the SDK
            # enters by itself after a 403 on keys/get: every operation goes to the vault.
            c = CryptographyClient(key_id, credential, **common)
            c._keys_get_forbidden = True
            return c

        def poll(fn, seconds=10):
            deadline = time.monotonic() + seconds
            while True:
                v = fn()
                if v or time.monotonic() > deadline:
                    return v
                time.sleep(0.2)

        def delete(client, name):
            client.begin_delete_key(name, _polling_interval=0.2).wait(timeout=10)

        def expect_error(name, fn, status, code=None, exc=HttpResponseError):
            try:
                fn()
                check(name, False, "no error")
            except exc as e:
                check(name, e.status_code == status and (code is None or has_code(e, code)),
                      "status %s codes %s: %s" % (e.status_code, codes(e), str(e)[:300]))
            except Exception as e:  # the wrong exception type is a failure too
                check(name, False, repr(e)[:400])

        now = datetime.datetime.now(datetime.timezone.utc)

        # ------------------------------------------------------------------ create
        v1 = None
        try:
            k = kc.create_rsa_key("rsa2048", size=2048)
            v1 = k
            n = k.key.n
            check("create RSA 2048: kty, modulus size, e",
                  k.key_type == "RSA" and len(n) == 256 and n[0] >= 0x80
                  and k.key.e == b"\x01\x00\x01",
                  (k.key_type, len(n), k.key.e))
            check("create: kid is {vault}/keys/{name}/{32 hex}",
                  re.fullmatch(re.escape(url_a) + r"/keys/rsa2048/[0-9a-f]{32}",
                               k.id or "") is not None
                  and k.name == "rsa2048" and k.properties.version == k.id.rsplit("/", 1)[1], k.id)
            check("create: attributes enabled, created, updated",
                  k.properties.enabled is True and k.properties.created_on is not None
                  and k.properties.updated_on is not None, k.properties._attributes)
            check("create: recoveryLevel Recoverable, 90 days (purge protection)",
                  k.properties.recovery_level == "Recoverable"
                  and k.properties.recoverable_days == 90,
                  (k.properties.recovery_level, k.properties.recoverable_days))
            check("create: key_ops", set(k.key_operations or []) >=
                  {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"},
                  k.key_operations)
            check("create: no private parts in the answer",
                  k.key.d is None and k.key.p is None and k.key.q is None)
        except Exception as e:
            crash("create RSA 2048", e)
        try:
            k = kc.create_rsa_key("rsa3072", size=3072, tags={"size": "3072"})
            check("create RSA 3072", k.key_type == "RSA" and len(k.key.n) == 384
                  and k.properties.tags == {"size": "3072"}, (k.key_type, len(k.key.n)))
        except Exception as e:
            crash("create RSA 3072", e)
        try:
            k = kc.create_rsa_key("rsahsm", size=2048, hardware_protected=True)
            check("create RSA-HSM", k.key_type == "RSA-HSM" and len(k.key.n) == 256, k.key_type)
        except Exception as e:
            crash("create RSA-HSM", e)
        # EC keys are supported since commit 12533bd (as in Azure): the 400 BadParameter
        # case is a symmetric key, which a key vault (not Managed HSM) refuses.
        expect_error("create oct (symmetric) -> 400 BadParameter",
                     lambda: kc.create_oct_key("oct1"), 400, "BadParameter")
        try:
            ek = kc.create_ec_key("ec1", curve="P-256")
            check("create EC P-256", ek.key_type == "EC" and ek.key.crv == "P-256"
                  and len(ek.key.x) == 32 and len(ek.key.y) == 32 and ek.key.d is None,
                  (ek.key_type, ek.key.crv))
            erc = remote(ek.id)
            digest = hashlib.sha256(b"ec message").digest()
            sig = erc.sign(SignatureAlgorithm.es256, digest).signature
            check("ES256: sign on the vault (r||s, 64 bytes), verify on the vault",
                  len(sig) == 64 and erc.verify(SignatureAlgorithm.es256, digest, sig).is_valid)
            epub = ec.EllipticCurvePublicNumbers(int.from_bytes(ek.key.x, "big"),
                                                 int.from_bytes(ek.key.y, "big"),
                                                 ec.SECP256R1()).public_key()
            try:
                epub.verify(utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                                       int.from_bytes(sig[32:], "big")),
                            digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
                check("ES256: verify locally with cryptography", True)
            except InvalidSignature:
                check("ES256: verify locally with cryptography", False)
            expect_error("wrap with an EC key -> 400 BadParameter",
                         lambda: erc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32), 400,
                         "BadParameter")
        except Exception as e:
            crash("EC keys", e)
        expect_error("create with a bad name -> 400 BadParameter",
                     lambda: kc.create_rsa_key("bad_name!"), 400, "BadParameter")

        # ------------------------------------------------------------------- get
        try:
            v2 = kc.create_rsa_key("rsa2048", size=2048)
            latest = kc.get_key("rsa2048")
            check("get latest = newest version",
                  latest.properties.version == v2.properties.version
                  and latest.properties.version != v1.properties.version, latest.id)
            old = kc.get_key("rsa2048", v1.properties.version)
            check("get by version", old.id == v1.id and old.key.n == v1.key.n
                  and old.key.n != v2.key.n, old.id)
        except Exception as e:
            crash("get latest and by version", e)

        # ---------------------------------------------------------------- paging
        try:
            page_names = ["page-%d" % i for i in range(5)]
            for nm in page_names:
                kc.create_rsa_key(nm, size=2048)
            pages = [list(p) for p in kc.list_properties_of_keys(max_page_size=2).by_page()]
            names = [p.name for pg in pages for p in pg]
            check("list keys: every name, once",
                  set(page_names) <= set(names) and len(names) == len(set(names)), names)
            check("list keys: max_page_size=2 pages (more than one, none over 2)",
                  len(pages) > 1 and all(len(pg) <= 2 for pg in pages),
                  [len(pg) for pg in pages])
            check("list keys: items have no version and no key material",
                  all(p.version is None for pg in pages for p in pg))
        except Exception as e:
            crash("list keys with paging", e)
        try:
            vers = [kc.create_rsa_key("versions", size=2048).properties.version for _ in range(3)]
            pages = [list(p) for p in
                     kc.list_properties_of_key_versions("versions", max_page_size=2).by_page()]
            got = [p.version for pg in pages for p in pg]
            check("list versions: all three, paged by 2",
                  sorted(got) == sorted(vers) and len(pages) > 1
                  and all(len(pg) <= 2 for pg in pages), (got, [len(pg) for pg in pages]))
            check("list versions: ids carry the version",
                  all(p.id.endswith("/versions/" + p.version) or p.id.endswith("/" + p.version)
                      for pg in pages for p in pg))
        except Exception as e:
            crash("list versions with paging", e)

        # ---------------------------------------------------------------- update
        try:
            k = kc.create_rsa_key("upd", size=2048)
            exp = (now + datetime.timedelta(days=30)).replace(microsecond=0)
            u = kc.update_key_properties("upd", enabled=False, expires_on=exp,
                                         tags={"team": "byok"},
                                         key_operations=["wrapKey", "unwrapKey"])
            check("update: enabled, expires_on, tags, key_ops in the answer",
                  u.properties.enabled is False and u.properties.expires_on == exp
                  and u.properties.tags == {"team": "byok"}
                  and sorted(u.key_operations or []) == ["unwrapKey", "wrapKey"]
                  and u.properties.version == k.properties.version,
                  (u.properties.enabled, u.properties.expires_on, u.properties.tags,
                   u.key_operations))
            g = kc.get_key("upd")
            check("update: get shows the change",
                  g.properties.enabled is False and g.properties.tags == {"team": "byok"},
                  g.properties._attributes)
            expect_error("wrap with a disabled key -> 403 KeyDisabled",
                         lambda: remote(k.id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32),
                         403, "KeyDisabled")
            kc.update_key_properties("upd", k.properties.version, enabled=True)
            w = remote(k.id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
            check("re-enabled key wraps", len(w.encrypted_key) == 256)
            expect_error("operation outside key_ops is refused (sign)",
                         lambda: remote(k.id).sign(SignatureAlgorithm.rs256, b"\x01" * 32),
                         403)
        except Exception as e:
            crash("update", e)
        try:
            past = (now - datetime.timedelta(days=1)).replace(microsecond=0)
            k = kc.create_rsa_key("expired", size=2048, expires_on=past)
            check("create with exp in the past", k.properties.expires_on == past,
                  k.properties.expires_on)
            try:
                remote(k.id).wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 32)
                check("expired key refused", False, "wrap succeeded")
            except HttpResponseError as e:
                check("expired key refused (403/400 %s)" % sorted(codes(e)),
                      e.status_code in (400, 403), e.status_code)
            fut = (now + datetime.timedelta(days=2)).replace(microsecond=0)
            k = kc.create_rsa_key("notyet", size=2048, not_before=fut)
            try:
                remote(k.id).wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 32)
                check("not-yet-valid key refused", False, "wrap succeeded")
            except HttpResponseError as e:
                check("not-yet-valid key refused (403/400 %s)" % sorted(codes(e)),
                      e.status_code in (400, 403), e.status_code)
        except Exception as e:
            crash("expired key", e)

        # -------------------------------------------------------------- crypto
        try:
            ck = kc.create_rsa_key("crypto", size=2048)
            rc = remote(ck.id)
            local = CryptographyClient.from_jwk(ck.key)
            pub = rsa.RSAPublicNumbers(int.from_bytes(ck.key.e, "big"),
                                       int.from_bytes(ck.key.n, "big")).public_key()
            cek = os.urandom(32)
            for alg in (KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256,
                        KeyWrapAlgorithm.rsa1_5):
                w = local.wrap_key(alg, cek)
                u = rc.unwrap_key(alg, w.encrypted_key)
                check("%s: wrap locally (SDK, public JWK), unwrap on the vault" % alg.value,
                      u.key == cek)
                w = rc.wrap_key(alg, cek)
                u = rc.unwrap_key(alg, w.encrypted_key)
                check("%s: wrap and unwrap on the vault" % alg.value,
                      u.key == cek and len(w.encrypted_key) == 256
                      and w.key_id == ck.id, w.key_id)
                e = rc.encrypt(EncryptionAlgorithm(alg.value), b"plaintext")
                d = rc.decrypt(EncryptionAlgorithm(alg.value), e.ciphertext)
                check("%s: encrypt/decrypt on the vault" % alg.value,
                      d.plaintext == b"plaintext")
            oaep256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                   label=None)
            u = rc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, pub.encrypt(cek, oaep256))
            check("RSA-OAEP-256 by cryptography from n/e, unwrap on the vault", u.key == cek)
            expect_error("unwrap of garbage -> 400",
                         lambda: rc.unwrap_key(KeyWrapAlgorithm.rsa_oaep, b"\x00" * 256), 400)
            digest = hashlib.sha256(b"records of tenant 42").digest()
            for alg, pad in ((SignatureAlgorithm.rs256, padding.PKCS1v15()),
                             (SignatureAlgorithm.ps256,
                              padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))):
                s = rc.sign(alg, digest)
                check("%s: sign on the vault, verify on the vault" % alg.value,
                      rc.verify(alg, digest, s.signature).is_valid is True)
                try:
                    pub.verify(s.signature, digest, pad, utils.Prehashed(hashes.SHA256()))
                    check("%s: verify locally with cryptography" % alg.value, True)
                except InvalidSignature:
                    check("%s: verify locally with cryptography" % alg.value, False)
                check("%s: verify locally with the SDK" % alg.value,
                      local.verify(alg, digest, s.signature).is_valid is True)
                bad = bytearray(s.signature)
                bad[10] ^= 1
                check("%s: a tampered signature verifies False on the vault" % alg.value,
                      rc.verify(alg, digest, bytes(bad)).is_valid is False)
        except Exception as e:
            crash("crypto operations", e)

        # ------------------------------------------------------------ rotation
        try:
            k = kc.create_rsa_key("rot", size=2048)
            r = kc.rotate_key("rot")
            latest = kc.get_key("rot")
            check("rotate: a new version becomes latest",
                  r.properties.version != k.properties.version
                  and latest.properties.version == r.properties.version
                  and latest.key.n != k.key.n, (k.id, r.id, latest.id))
            pol = KeyRotationPolicy(
                lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate,
                                                            time_after_create="P30D")],
                expires_in="P90D")
            p = kc.update_key_rotation_policy("rot", pol)

            def pol_ok(p):
                a = p.lifetime_actions
                return (p.expires_in == "P90D" and len(a) == 1
                        and str(a[0].action).lower().endswith("rotate")
                        and a[0].time_after_create == "P30D" and a[0].time_before_expiry is None)
            check("rotation policy set", pol_ok(p),
                  (p.expires_in, [vars(a) for a in p.lifetime_actions]))
            g = kc.get_key_rotation_policy("rot")
            check("rotation policy get", pol_ok(g) and g.id and g.created_on is not None,
                  (g.id, g.expires_in, [vars(a) for a in g.lifetime_actions]))
        except Exception as e:
            crash("rotation", e)

        # ------------------------------------------------- delete and recover
        try:
            k = kc.create_rsa_key("del-rec", size=2048)
            poller = kc.begin_delete_key("del-rec", _polling_interval=0.2)
            poller.wait(timeout=10)
            dk = poller.result()
            check("delete: deleted key with recoveryId and dates",
                  (dk.recovery_id or "").endswith("/deletedkeys/del-rec")
                  and dk.deleted_date is not None and dk.scheduled_purge_date is not None
                  and dk.key.n == k.key.n, (dk.recovery_id, dk.deleted_date,
                                            dk.scheduled_purge_date))
            gd = kc.get_deleted_key("del-rec")
            check("get_deleted_key", gd.name == "del-rec" and gd.properties.version ==
                  k.properties.version, gd.id)
            check("list_deleted_keys names it",
                  "del-rec" in [d.name for d in kc.list_deleted_keys(max_page_size=5)])
            expect_error("get of a deleted key -> 404", lambda: kc.get_key("del-rec"), 404,
                         exc=ResourceNotFoundError)
            poller = kc.begin_recover_deleted_key("del-rec", _polling_interval=0.2)
            poller.wait(timeout=10)
            rk = poller.result()
            check("recover: the bundle comes back", rk.id == k.id, rk.id)
            cek = os.urandom(32)
            c = remote(k.id)
            check("recovered key is usable",
                  c.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256,
                               c.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, cek).encrypted_key
                               ).key == cek)
        except Exception as e:
            crash("delete and recover", e)
        try:
            kc.create_rsa_key("conflict", size=2048)
            delete(kc, "conflict")
            expect_error("create over a deleted key -> 409 ObjectIsDeletedButRecoverable",
                         lambda: kc.create_rsa_key("conflict", size=2048), 409,
                         "ObjectIsDeletedButRecoverable", exc=ResourceExistsError)
            expect_error("purge under purge protection -> 403",
                         lambda: kc.purge_deleted_key("conflict"), 403)
            check("deleted key still there after the refused purge",
                  kc.get_deleted_key("conflict").name == "conflict")
        except Exception as e:
            crash("conflict and protected purge", e)

        # ----------------------------------------- vault without purge protection
        try:
            k = kb.create_rsa_key("purge-me", size=2048)
            check("second vault: recoveryLevel CustomizedRecoverable+Purgeable, 7 days",
                  k.properties.recovery_level == "CustomizedRecoverable+Purgeable"
                  and k.properties.recoverable_days == 7,
                  (k.properties.recovery_level, k.properties.recoverable_days))
            delete(kb, "purge-me")
            kb.purge_deleted_key("purge-me")
            check("purge allowed without purge protection", True)
            expect_error("purged key is gone", lambda: kb.get_deleted_key("purge-me"), 404,
                         exc=ResourceNotFoundError)
            check("name free again after purge",
                  kb.create_rsa_key("purge-me", size=2048).name == "purge-me")
        except Exception as e:
            crash("purge", e)
        try:
            b1 = kb.create_rsa_key("bk", size=2048)
            b2 = kb.create_rsa_key("bk", size=2048, tags={"v": "2"})
            blob = kb.backup_key("bk")
            check("backup gives an opaque blob", isinstance(blob, bytes) and len(blob) > 100)
            delete(kb, "bk")
            kb.purge_deleted_key("bk")
            expect_error("backed-up key purged", lambda: kb.get_key("bk"), 404,
                         exc=ResourceNotFoundError)
            r = kb.restore_key_backup(blob)
            vers = sorted(x.version for x in kb.list_properties_of_key_versions("bk"))
            check("restore: same versions and public key",
                  r.name == "bk" and r.key.n == b2.key.n and
                  vers == sorted([b1.properties.version, b2.properties.version])
                  and kb.get_key("bk", b1.properties.version).key.n == b1.key.n
                  and r.properties.tags == {"v": "2"}, (r.id, vers))
            expect_error("restore over an existing key -> 409",
                         lambda: kb.restore_key_backup(blob), 409, exc=ResourceExistsError)
            expect_error("restore of a tampered blob -> 400",
                         lambda: kb.restore_key_backup(blob[:-5] + b"xxxxx"), 400)
        except Exception as e:
            crash("backup and restore", e)

        # -------------------------------------------------------------- errors
        expect_error("missing key -> ResourceNotFoundError KeyNotFound",
                     lambda: kc.get_key("no-such-key"), 404, "KeyNotFound",
                     exc=ResourceNotFoundError)
        try:
            expect_error("missing version -> ResourceNotFoundError KeyNotFound",
                         lambda: kc.get_key("rsa2048", "0" * 32), 404, "KeyNotFound",
                         exc=ResourceNotFoundError)
        except Exception as e:
            crash("missing version", e)
        try:
            foreign = ClientSecretCredential(tid2, f_app, f_secret, authority=idp,
                                             instance_discovery=False, connection_verify=ca)
            ftok = foreign.get_token(SCOPE)

            class FixedToken:  # any TokenCredential: always the other directory's token
                def get_token(self, *scopes, **kwargs):
                    return AccessToken(ftok.token, ftok.expires_on)

            try:
                KeyClient(url_a, FixedToken(), **common).get_key("rsa2048")
                check("token of another directory refused", False, "get succeeded")
            except ClientAuthenticationError as e:
                check("token of another directory -> ClientAuthenticationError 401",
                      e.status_code == 401, e.status_code)
            except HttpResponseError as e:
                check("token of another directory -> 401", e.status_code == 401, e.status_code)
        except Exception as e:
            crash("foreign directory", e)

        token = cred.get_token(SCOPE).token
        sess = requests.Session()
        sess.trust_env = False

        def raw(method, path, api=API, tok=token, **kw):
            q = "" if api is None else ("?api-version=" + api)
            h = {"Authorization": "Bearer " + tok} if tok else {}
            return sess.request(method, url_a + path + q, headers=h, verify=ca, timeout=10, **kw)

        try:
            r = raw("GET", "/keys/rsa2048", tok=None)
            wa = r.headers.get("WWW-Authenticate", "")
            check("no token -> 401 Unauthorized AKV10000 with the challenge",
                  r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
                  and r.json()["error"]["message"].startswith("AKV10000")
                  and ('authorization="%s/%s"' % (idp, tid)) in wa
                  and 'resource="https://vault.azure.net"' in wa, (r.status_code, wa, r.text[:200]))
        except Exception as e:
            crash("no token", e)

        # ---------------------------------------------------- access policies
        try:
            wk = KeyClient(url_a, w_cred, **common)
            target = kc.get_key("crypto")
            wrc = remote(target.id, w_cred)
            cek = os.urandom(32)
            kc_wrapped = remote(target.id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256,
                                                    cek).encrypted_key
            ops = {
                "wrapKey": lambda: wrc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, cek),
                "unwrapKey": lambda: wrc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, kc_wrapped),
                "list": lambda: next(iter(wk.list_properties_of_keys(max_page_size=2).by_page())),
                "get": lambda: wk.get_key("crypto"),
            }
            for missing in ops:
                perms = [p for p in base_perms.split(",") if p != missing]
                va("policy", "set", "contoso", "--object-id", w_oid, "--permissions",
                   ",".join(perms))
                for op, fn in ops.items():
                    if op == missing:
                        try:
                            fn() if op != "list" else list(fn())
                            check("without %s: %s -> 403 AccessDenied" % (missing, op), False,
                                  "allowed")
                        except HttpResponseError as e:
                            check("without %s: %s -> 403 AccessDenied" % (missing, op),
                                  e.status_code == 403 and has_code(e, "AccessDenied")
                                  and missing in str(e) and w_oid in str(e),
                                  (e.status_code, codes(e), str(e)[:300]))
                    else:
                        try:
                            fn() if op != "list" else list(fn())
                            check("without %s: %s still works" % (missing, op), True)
                        except Exception as e:
                            check("without %s: %s still works" % (missing, op), False,
                                  repr(e)[:300])
            va("policy", "delete", "contoso", "--object-id", w_oid)
            expect_error("policy deleted: get -> 403 AccessDenied", lambda: wk.get_key("crypto"),
                         403, "AccessDenied")
        except Exception as e:
            crash("access policies", e)

        # ------------------------------------------------------------- firewall
        try:
            va("firewall", "contoso", "--default-action", "Deny", "--ip-rule", "10.0.0.0/8")
            expect_error("firewall Deny, 10.0.0.0/8 -> 403 ForbiddenByFirewall",
                         lambda: kc.get_key("rsa2048"), 403, "ForbiddenByFirewall")
            va("firewall", "contoso", "--default-action", "Deny", "--ip-rule", "127.0.0.1/32")
            check("firewall with 127.0.0.1/32 admits us",
                  kc.get_key("rsa2048").name == "rsa2048")
            va("firewall", "contoso", "--default-action", "Allow")
        except Exception as e:
            crash("firewall", e)

        # ----------------------------------------------------------- throttling
        try:
            va("update", "contoso", "--limit-ops", "5")
            rs = [raw("GET", "/keys/rsa2048") for _ in range(15)]
            thr = [r for r in rs if r.status_code == 429]
            check("throttling: a burst over --limit-ops 5 gets 429s",
                  len(thr) > 0 and all(r.status_code in (200, 429) for r in rs),
                  [r.status_code for r in rs])
            if thr:
                ra = thr[0].headers.get("Retry-After", "")
                check("429 carries Retry-After (seconds) and code Throttled",
                      ra.isdigit() and 0 < int(ra) <= 10
                      and thr[0].json()["error"]["code"] == "Throttled", (ra, thr[0].text[:200]))
            va("update", "contoso", "--limit-ops", "4000")
            check("limit raised: requests flow again",
                  poll(lambda: raw("GET", "/keys/rsa2048").status_code == 200, 12))
        except Exception as e:
            crash("throttling", e)

        # ---------------------------------------------------------- api-version
        try:
            for ver in ("7.0", "7.3", "7.5", "7.4-preview.1"):
                r = raw("GET", "/keys", api=ver)
                check("api-version %s accepted" % ver, r.status_code == 200,
                      (r.status_code, r.text[:200]))
            for ver in ("6.0", None):
                r = raw("GET", "/keys", api=ver)
                check("api-version %s -> 400 BadParameter" % ver,
                      r.status_code == 400 and r.json()["error"]["code"] == "BadParameter",
                      (r.status_code, r.text[:200]))
        except Exception as e:
            crash("api-version", e)

        # ---------------------------------------------------------- injected faults
        try:
            va("faults", "--error-rate", "1", "--error-status", "503")
            expect_error("injected 503s: the SDK retries, then HttpResponseError 503",
                         lambda: kc.get_key("rsa2048"), 503)
            va("faults", "--error-rate", "0")
            check("faults off: requests flow again", kc.get_key("rsa2048").name == "rsa2048")
        except Exception as e:
            crash("faults", e)

        # Last, because they hit handlers that read freed memory (an ASan build aborts):
        # POST /rng and the test clock.
        try:
            rnd = kc.get_random_bytes(16)
            check("random bytes (POST /rng)", len(rnd) == 16)
        except HttpResponseError as e:
            check("random bytes (POST /rng)", False, "%s %s" % (e.status_code, str(e)[:200]))
        except Exception as e:
            crash("random bytes", e)
        # the rotation policy of "rot" (timeAfterCreate P30D, expiry P90D) was set above
        try:
            before = [x.version for x in kc.list_properties_of_key_versions("rot")]
            try:
                va("clock", "--advance", str(31 * DAY))
                check("atrest vault clock --advance 31 days", True)
                advanced = True
            except RuntimeError as e:
                check("atrest vault clock --advance 31 days", False, e)
                advanced = False
            after = poll(lambda: (lambda vs: vs if len(vs) > len(before) else None)(
                [x.version for x in kc.list_properties_of_key_versions("rot")]),
                10 if advanced else 0)
            check("clock +31 days: the vault rotated the key itself",
                  after is not None and len(after) == len(before) + 1, (before, after))
            if after:
                nk = kc.get_key("rot")
                created = nk.properties.created_on
                check("auto-rotated version is latest, expiry P90D",
                      nk.properties.version not in before and created is not None
                      and nk.properties.expires_on is not None and
                      abs((nk.properties.expires_on - created).total_seconds() - 90 * DAY) < 3600,
                      (nk.id, created, nk.properties.expires_on))
        except Exception as e:
            crash("rotation by the vault", e)
    except Exception as e:
        crash("setup", e)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # the servers' logs: report error-level lines (a 5xx or an internal failure)
        for tag in ("vault-a", "vault-b", "idp"):
            path = logs.get(tag)
            bad = []
            if path and os.path.exists(path):
                with open(path, errors="replace") as f:
                    for line in f:
                        try:
                            if json.loads(line).get("level") == "error":
                                bad.append(line.strip())
                        except ValueError:
                            if any(w in line for w in ("ERROR", "Sanitizer", "runtime error")):
                                bad.append(line.strip())
            check("%s log has no error lines" % tag, not bad, "\n  ".join(bad[:10]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("wall time %.1f s" % (time.monotonic() - t_start))
    if failures:
        print("failed: " + "; ".join(failures))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
