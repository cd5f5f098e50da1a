#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""conformance.idp: Microsoft's own clients against `atrest idp`.

Starts `atrest idp serve` on a free port with a fresh CA, provisions a
directory, an application and its service principal with the admin CLI, then:
  - azure-identity's ClientSecretCredential (MSAL underneath) gets a token for
    https://vault.azure.net/.default from our authority, with
    instance_discovery=False (azure-identity 1.13.0b2 / MSAL 1.21);
  - PyJWT verifies it against our JWKS (PyJWKClient) with audience and issuer;
  - a disabled service principal makes the credential fail with AADSTS7000112,
    and enabling it again makes tokens flow;
  - a wrong secret fails with AADSTS7000215.
Run with /usr/bin/python3 (Debian's python3-azure and python3-jwt).
Prints "N passed, N failed" last; exit 1 on any failure.
"""
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + str(detail) if detail else ""))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ATR_BIN")
    if not binary:
        print("usage: idp_conformance.py path/to/atrest")
        return 2
    try:
        import jwt  # PyJWT
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import ClientSecretCredential
    except ImportError as e:
        print("skipping: " + str(e))
        return 77

    tmp = tempfile.mkdtemp(prefix="atr-idp-conf-")
    proc = None
    try:
        tls = os.path.join(tmp, "tls")
        subprocess.run([binary, "cert", "--dir", tls, "--host", "127.0.0.1", "--host",
                        "localhost"], check=True, stdout=subprocess.DEVNULL)
        ca = os.path.join(tls, "ca.pem")
        state = os.path.join(tmp, "state")
        out = open(os.path.join(tmp, "out"), "w+")
        err = open(os.path.join(tmp, "err"), "w+")
        proc = subprocess.Popen([binary, "idp", "serve", "--dir", state, "--cert",
                                 os.path.join(tls, "server.pem"), "--key",
                                 os.path.join(tls, "server.key"), "--port", "0"],
                                stdout=out, stderr=err)
        url = None
        for _ in range(100):
            out.seek(0)
            line = out.readline().strip()
            if line.startswith("https://"):
                url = line
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        check("server prints its URL", url is not None)
        if url is None:
            err.seek(0)
            print(err.read())
            return 1
        os.environ["REQUESTS_CA_BUNDLE"] = ca
        os.environ["SSL_CERT_FILE"] = ca
        admin = ["--url", url, "--ca", ca, "--admin-secret-file",
                 os.path.join(state, "admin.secret")]

        def cli(*args):
            r = subprocess.run([binary, "idp"] + list(args[:2]) + admin + list(args[2:]),
                               check=True, capture_output=True, text=True)
            return r.stdout

        tid = json.loads(cli("directory", "create", "--name", "Contoso"))["id"]
        app = json.loads(cli("app", "create", "--tenant", tid, "--name", "byok"))
        app_id, secret = app["appId"], app["secret"]
        sp = json.loads(cli("sp", "create", "--tenant", tid, "--app-id", app_id))
        cli("sp", "grant", "--tenant", tid, "--id", sp["id"], "--role", "Records.Read")

        scope = "https://vault.azure.net/.default"
        cred = ClientSecretCredential(tid, app_id, secret, authority=url,
                                      instance_discovery=False)
        token = None
        try:
            token = cred.get_token(scope)
        except Exception as e:  # report, do not crash
            check("ClientSecretCredential gets a token", False, repr(e))
        if token is not None:
            check("ClientSecretCredential gets a token", bool(token.token))
            check("expires_on is about an hour ahead",
                  3000 < token.expires_on - time.time() < 3700, token.expires_on)
            ctx = ssl.create_default_context(cafile=ca)
            jwks = jwt.PyJWKClient(url + "/" + tid + "/discovery/v2.0/keys", ssl_context=ctx) \
                if "ssl_context" in jwt.PyJWKClient.__init__.__code__.co_varnames else None
            if jwks is None:
                # PyJWT 2.6 has no ssl_context: fetch the JWKS ourselves
                import urllib.request
                with urllib.request.urlopen(url + "/" + tid + "/discovery/v2.0/keys",
                                            context=ctx) as r:
                    keyset = jwt.PyJWKSet.from_dict(json.load(r))
                kid = jwt.get_unverified_header(token.token)["kid"]
                key = next(k for k in keyset.keys if k.key_id == kid).key
            else:
                key = jwks.get_signing_key_from_jwt(token.token).key
            try:
                claims = jwt.decode(token.token, key, algorithms=["RS256"],
                                    audience="https://vault.azure.net",
                                    issuer=url + "/" + tid + "/v2.0")
                check("PyJWT verifies signature, aud and iss", True)
                check("tid, oid, appid, roles", claims.get("tid") == tid and
                      claims.get("oid") == sp["id"] and claims.get("appid") == app_id and
                      claims.get("roles") == ["Records.Read"], claims)
            except Exception as e:
                check("PyJWT verifies signature, aud and iss", False, repr(e))
            try:
                jwt.decode(token.token, key, algorithms=["RS256"], audience="https://other",
                           issuer=url + "/" + tid + "/v2.0")
                check("PyJWT rejects another audience", False)
            except jwt.InvalidAudienceError:
                check("PyJWT rejects another audience", True)

        cli("sp", "disable", "--tenant", tid, "--id", sp["id"])
        try:
            ClientSecretCredential(tid, app_id, secret, authority=url,
                                   instance_discovery=False).get_token(scope)
            check("disabled service principal is refused", False)
        except ClientAuthenticationError as e:
            check("disabled service principal is refused (AADSTS7000112)",
                  "AADSTS7000112" in str(e), str(e)[:300])
        cli("sp", "enable", "--tenant", tid, "--id", sp["id"])
        try:
            t = ClientSecretCredential(tid, app_id, secret, authority=url,
                                       instance_discovery=False).get_token(scope)
            check("re-enabled service principal gets tokens", bool(t.token))
        except Exception as e:
            check("re-enabled service principal gets tokens", False, repr(e))
        try:
            ClientSecretCredential(tid, app_id, "x" * 40, authority=url,
                                   instance_discovery=False).get_token(scope)
            check("wrong secret is refused", False)
        except ClientAuthenticationError as e:
            check("wrong secret is refused (AADSTS7000215)", "AADSTS7000215" in str(e),
                  str(e)[:300])
        # certificate credentials: MSAL signs the assertion with the certificate's key
        # and names it by thumbprint (x5t), with no kid
        from azure.identity import CertificateCredential

        def make_cert(name):
            key, crt = os.path.join(tmp, name + ".key"), os.path.join(tmp, name + ".crt")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", crt, "-subj", "/CN=" + name, "-days", "2"],
                           check=True, capture_output=True)
            both = os.path.join(tmp, name + ".pem")
            with open(both, "w") as f:
                f.write(open(key).read() + open(crt).read())
            return crt, both

        crt, both = make_cert("byok-cert")
        cli("app", "add-key", "--app-id", app_id, "--key-file", crt)
        try:
            t = CertificateCredential(tid, app_id, certificate_path=both, authority=url,
                                      instance_discovery=False).get_token(scope)
            claims = jwt.decode(t.token, options={"verify_signature": False})
            check("CertificateCredential gets a token", claims.get("appid") == app_id, claims)
        except Exception as e:
            check("CertificateCredential gets a token", False, repr(e)[:300])
        _, rogue = make_cert("rogue-cert")
        try:
            CertificateCredential(tid, app_id, certificate_path=rogue, authority=url,
                                  instance_discovery=False).get_token(scope)
            check("an unregistered certificate is refused", False)
        except ClientAuthenticationError as e:
            check("an unregistered certificate is refused (AADSTS700027)",
                  "AADSTS700027" in str(e), str(e)[:300])

        other = "00000000-0000-4000-8000-000000000000"
        try:
            ClientSecretCredential(other, app_id, secret, authority=url,
                                   instance_discovery=False).get_token(scope)
            check("unknown directory is refused", False)
        except (ClientAuthenticationError, ValueError) as e:
            check("unknown directory is refused", True)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
