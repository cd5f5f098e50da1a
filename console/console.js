/*
 * atrest admin console: Settings > Cloud Apps > Data encryption.
 *
 * Plain JavaScript, no framework, no build step, no inline code (the page is
 * served with a strict Content-Security-Policy). It talks to the data
 * service's API with the bearer token the admin signs in with:
 *   GET    /v1/tenants/{tid}/encryption   state, key, reason
 *   PUT    /v1/tenants/{tid}/encryption   enable {"keyUri"}: validation report
 *   DELETE /v1/tenants/{tid}/encryption   back to service-managed keys
 *   GET    /v1/tenants/{tid}/audit        recent key events
 * The token's payload is decoded here only to show the tenant, roles and
 * expiry; the service validates it. Query parameter ?poll=MS sets the refresh
 * period (default 5000 ms). See docs/console.md.
 */
(function () {
  'use strict';

  const TOKEN_KEY = 'atrest.console.token';
  const POLL_DEFAULT_MS = 5000;
  const GET_TIMEOUT_MS = 20000;
  const CHANGE_TIMEOUT_MS = 90000;
  const AUDIT_LIMIT = 20;

  /* ------------------------------------------------------------ helpers */

  function $(id) {
    return document.getElementById(id);
  }

  function str(v) {
    return typeof v === 'string' ? v : '';
  }

  function isObj(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  }

  function clip(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }

  function el(tag, attrs, children) {
    let e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') e.textContent = attrs[k];
        else if (k === 'className') e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, on) {
    node.hidden = !on;
  }

  function pollPeriod() {
    let p = null;
    try {
      p = new URLSearchParams(window.location.search).get('poll');
    } catch (e) {
      p = null;
    }
    let n = p !== null && /^[0-9]{1,7}$/.test(p) ? parseInt(p, 10) : POLL_DEFAULT_MS;
    return Math.min(Math.max(n, 250), 600000);
  }

  let dateFmt = null;
  try {
    dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  } catch (e) {
    dateFmt = null;
  }

  /* An RFC 3339 time as local text, or '' when it is not one. */
  function when(iso) {
    let s = str(iso);
    if (s === '') return '';
    let d = new Date(s);
    if (isNaN(d.getTime())) return s;
    return dateFmt ? dateFmt.format(d) : d.toString();
  }

  /* A <time> element for an RFC 3339 string, or a dash. */
  function timeNode(iso) {
    let s = str(iso);
    if (s === '') return document.createTextNode('–');
    return el('time', { datetime: s, title: s, text: when(s) });
  }

  /* The last path segment of a key id (the version), or the text itself. */
  function lastSegment(uri) {
    let s = str(uri).replace(/\/+$/, '');
    let i = s.lastIndexOf('/');
    return i >= 0 ? s.slice(i + 1) : s;
  }

  function announce(text) {
    let a = $('announcer');
    a.textContent = '';
    window.setTimeout(function () {
      a.textContent = text;
    }, 50);
  }

  /* ------------------------------------------------------------ the token */

  let memoryToken = null; /* when sessionStorage is unavailable */

  function storeToken(t) {
    memoryToken = t;
    try {
      if (t === null) window.sessionStorage.removeItem(TOKEN_KEY);
      else window.sessionStorage.setItem(TOKEN_KEY, t);
    } catch (e) {
      /* private mode or disabled storage: the token lives in memory only */
    }
  }

  function loadToken() {
    try {
      let t = window.sessionStorage.getItem(TOKEN_KEY);
      if (t) return t;
    } catch (e) {
      /* ignore */
    }
    return memoryToken;
  }

  function b64urlDecode(s) {
    let b = s.replace(/-/g, '+').replace(/_/g, '/');
    while (b.length % 4) b += '=';
    let bin = window.atob(b);
    let bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  }

  /*
   * The claims of a JWT, for display only: {tid, roles, exp, app} or an
   * {error} in plain words.
   */
  function decodeToken(t) {
    let parts = str(t).trim().split('.');
    if (parts.length !== 3 || parts[1] === '')
      return { error: 'This is not an access token: a token has three parts separated by dots.' };
    let claims;
    try {
      claims = JSON.parse(b64urlDecode(parts[1]));
    } catch (e) {
      return { error: 'This token cannot be read: its middle part is not base64url JSON.' };
    }
    if (!isObj(claims)) return { error: 'This token cannot be read: it has no claims.' };
    let tid = str(claims.tid);
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(tid))
      return { error: 'This token names no tenant (its "tid" claim is missing).' };
    let roles = Array.isArray(claims.roles) ? claims.roles.filter(function (r) {
      return typeof r === 'string';
    }) : [];
    return {
      tid: tid,
      roles: roles,
      exp: typeof claims.exp === 'number' ? claims.exp : null,
      app: str(claims.azp) || str(claims.appid)
    };
  }

  /* The token from a sign-in link (#token=...), removed from the address bar. */
  function takeTokenFromFragment() {
    let h = window.location.hash;
    if (!h || h.length < 2) return null;
    let token = null;
    try {
      token = new URLSearchParams(h.slice(1)).get('token');
    } catch (e) {
      token = null;
    }
    if (token !== null) {
      try {
        window.history.replaceState(null, '', window.location.pathname + window.location.search);
      } catch (e) {
        window.location.hash = '';
      }
    }
    return token;
  }

  /* ------------------------------------------------------------ the API */

  let session = null; /* {token, tid, roles, exp, app} */

  /*
   * One API call. Resolves (never rejects) to {status, body, error} where
   * body is the parsed JSON or null, status 0 for a network failure or a
   * timeout.
   */
  function api(method, path, payload, timeoutMs) {
    let ctrl = typeof AbortController === 'function' ? new AbortController() : null;
    let timer = ctrl ? window.setTimeout(function () {
      ctrl.abort();
    }, timeoutMs || GET_TIMEOUT_MS) : null;
    let headers = { Accept: 'application/json' };
    if (session) headers.Authorization = 'Bearer ' + session.token;
    let init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
    if (ctrl) init.signal = ctrl.signal;
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    return window.fetch(path, init).then(function (r) {
      return r.text().then(function (text) {
        let body = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch (e) {
          body = null;
        }
        return { status: r.status, body: body, error: null };
      });
    }).catch(function (e) {
      let aborted = e && e.name === 'AbortError';
      return {
        status: 0,
        body: null,
        error: aborted ? 'the service did not answer in time' : 'the service cannot be reached'
      };
    }).then(function (res) {
      if (timer !== null) window.clearTimeout(timer);
      return res;
    });
  }

  /* {code, message, fix, reason, checks} of an error answer (members may be ''). */
  function errorOf(res) {
    let e = isObj(res.body) && isObj(res.body.error) ? res.body.error : {};
    return {
      code: str(e.code),
      message: str(e.message),
      fix: str(e.fix),
      reason: str(e.reason),
      cause: str(e.cause),
      checks: Array.isArray(e.checks) ? e.checks : null
    };
  }

  /* A failed answer in plain words. */
  function describeFailure(res) {
    if (res.status === 0) return 'The request failed: ' + res.error + '. Check your connection.';
    let e = errorOf(res);
    if (res.status === 401)
      return 'The service did not accept your token (it may have expired). Sign in again.';
    if (res.status === 403)
      return 'Your token may not manage data encryption for tenant ' + (session ? session.tid : '') +
        ': it needs the DataEncryption.Admin role of that tenant.' +
        (e.message ? ' (' + e.message + ')' : '');
    let text = e.message || ('The service answered with status ' + res.status + '.');
    if (e.fix) text += ' ' + e.fix;
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function tenantPath(suffix) {
    return '/v1/tenants/' + encodeURIComponent(session.tid) + suffix;
  }

  /* ------------------------------------------------------------ reasons and fixes */

  const PORTAL_POLICY = 'In the Azure portal, open your key vault, then Access policies (or Access ' +
    'control (IAM) for a vault that uses Azure RBAC).';

  /*
   * Per reason code of the API: a title and the steps that fix it. The
   * steps may name the permission found in the service's reason text.
   */
  function fixFor(code, reasonText) {
    let perm = (/\b(list|wrapKey|unwrapKey|get)\b/.exec(reasonText || '') || [])[1] || '';
    let steps = {
      PermissionMissing: [
        PORTAL_POLICY,
        'Find the service\'s application (its service principal in your directory).',
        perm ? 'Grant it the key permission “' + perm + '” — it needs list, wrapKey and ' +
          'unwrapKey (with Azure RBAC: the role “Key Vault Crypto Service Encryption User”).'
          : 'Grant it the key permissions list, wrapKey and unwrapKey (with Azure RBAC: the ' +
          'role “Key Vault Crypto Service Encryption User”).',
        'Save. The service checks the key again by itself; this page updates when it does.'
      ],
      VaultFirewall: [
        'In the Azure portal, open your key vault, then Networking › Firewalls and virtual ' +
          'networks.',
        'Add the service\'s outbound address to the allowed IP ranges, or select “Allow trusted ' +
          'Microsoft services to bypass this firewall”.',
        'Save. The service checks the key again by itself.'
      ],
      ServicePrincipalDisabled: [
        'In the Microsoft Entra admin center, open Enterprise applications and find the ' +
          'service\'s application.',
        'Under Properties, set “Enabled for users to sign-in?” to Yes (PowerShell: ' +
          'Update-MgServicePrincipal -AccountEnabled:$true).',
        'The service checks again by itself.'
      ],
      ServicePrincipalMissing: [
        'The service\'s application is no longer registered in your directory (its service ' +
          'principal was deleted).',
        'Register it again: New-MgServicePrincipal -AppId <the service\'s application id>, or ' +
          'sign in to the service\'s admin consent link.',
        'Grant the new service principal list, wrapKey and unwrapKey on the key vault again ' +
          '(the old access policy named the deleted one).'
      ],
      KeyDisabled: [
        'In your key vault, open Keys › the key › its current version.',
        'Set “Enabled” to Yes and save.'
      ],
      KeyExpired: [
        'The key\'s current version has expired (or is not active yet).',
        'In your key vault, set a later expiration date on the version, or create a new ' +
          'version (Rotate now): the service moves to the new version by itself.'
      ],
      KeyNotFound: [
        'The key was deleted (or the URI names a key that does not exist).',
        'In your key vault, open Keys › Manage deleted keys, select the key and Recover it.',
        'A key that was purged cannot come back, and neither can the data it protects: keep ' +
          'purge protection on.'
      ],
      NoUsableVersion: [
        'No version of the key is enabled and valid now.',
        'Enable a version, change its activation and expiration dates, or create a new version.'
      ],
      VaultUnreachable: [
        'The service cannot reach the key vault: check that the vault still exists and that ' +
          'its name resolves.',
        'If the vault is fine, this is usually temporary: the service keeps retrying by itself.'
      ],
      VaultThrottled: [
        'The key vault is throttling requests (too many calls). The service retries by itself, ' +
          'never faster than the vault asks.',
        'If it lasts, look for other applications making many calls to the same vault.'
      ],
      VaultError: ['The key vault answered with a server error. The service retries by itself.'],
      VaultTlsError: [
        'The vault\'s TLS certificate is not trusted for its host name: check the key URI\'s ' +
          'host.'
      ],
      IdentityUnreachable: [
        'The identity service cannot be reached from the service. This is usually temporary; ' +
          'the service retries by itself.'
      ],
      DirectoryUnknown: ['The identity service does not know your directory: check the tenant.'],
      DirectoryMismatch: ['Use a key vault that belongs to your own directory.'],
      ServiceCredentialInvalid: [
        'The identity service refused the service\'s own credential: contact the operator of ' +
          'the service.'
      ],
      KeyNotRsa: ['Use an RSA key (2048, 3072 or 4096 bits): EC keys cannot wrap keys.'],
      KeyOperationNotAllowed: [
        'In your key vault, allow the wrapKey and unwrapKey operations on the key (its ' +
          'permitted operations).'
      ],
      UnwrapFailed: [
        'The vault could not unwrap what it wrapped: the key version may have been replaced ' +
          'or restored from another key.'
      ],
      UnwrapMismatch: ['The vault returned a different value: contact the vault\'s operator.'],
      PurgeProtectionOff: [
        'In your key vault, open Properties and turn on purge protection (it cannot be turned ' +
          'off afterwards).'
      ],
      InvalidKeyUri: [
        'Paste the key identifier shown by your vault: https://{vault}.vault.azure.net/keys/' +
          '{name}.'
      ]
    };
    let s = steps[code];
    if (!s)
      s = [
        'Check the key in your vault: it must exist, be enabled and not expired, and the ' +
          'service\'s application needs list, wrapKey and unwrapKey on it.',
        'The service checks the key again by itself; this page updates when it does.'
      ];
    return s;
  }

  /* ------------------------------------------------------------ rendering */

  let lastState = null;

  function stateOf(enc) {
    let st = str(enc.state);
    if (st === 'customer' || st === 'managed') return 'active';
    if (st === 'degraded' || st === 'locked') return st;
    return 'unknown';
  }

  const BADGE_TEXT = { active: 'Active', degraded: 'Degraded', locked: 'Locked', unknown: 'Unknown' };

  function setRow(rowId, ddId, node, visible) {
    let dd = $(ddId);
    clear(dd);
    dd.appendChild(node);
    if (rowId) show($(rowId), visible);
  }

  function renderEncryption(enc) {
    if (!isObj(enc)) enc = {};
    let customer = str(enc.mode) === 'customer';
    let state = stateOf(enc);
    let badge = $('state-badge');
    badge.dataset.state = state;
    badge.textContent = BADGE_TEXT[state] + (state === 'unknown' && str(enc.state) ?
      ' (' + clip(enc.state, 40) + ')' : '');
    $('status').setAttribute('aria-busy', 'false');

    $('d-mode').textContent = customer ? 'Your own key' : 'Service-managed keys';
    $('mode-text').textContent = customer
      ? 'Your data is encrypted with keys the service manages, and those keys are wrapped by ' +
        'your key in your vault: without access to your key nobody can read the data.'
      : 'Your data is encrypted at rest with keys the service manages for you (service-managed ' +
        'keys).';
    let uri = str(enc.keyUri);
    setRow('row-key-uri', 'd-key-uri', document.createTextNode(uri || '–'), customer);
    let kv = str(enc.keyVersion);
    let kvNode = el('span', null, [
      el('span', { className: 'mono', text: kv ? lastSegment(kv) : '–' }),
      kv ? el('span', { className: 'sub', text: kv }) : null
    ]);
    setRow('row-key-version', 'd-key-version', kvNode, customer);
    setRow('row-last-roll', 'd-last-roll', timeNode(enc.lastRoll), customer);
    setRow('row-last-ok', 'd-last-ok', timeNode(enc.lastSuccessfulCheck), customer);
    setRow('row-next-check', 'd-next-check', timeNode(enc.nextCheck), customer);
    setRow('row-lock-at', 'd-lock-at', timeNode(enc.lockAt), state === 'degraded');
    $('d-service-key').textContent = str(enc.serviceKey) || '–';

    renderProblem(enc, state);

    /* the forms that fit the mode */
    $('enable-title').textContent = customer ? 'Change the key' : 'Use your own key';
    $('enable-button').textContent = customer ? 'Validate and switch' : 'Validate and enable';
    show($('disable'), customer);
    show($('enable-locked'), state === 'locked');
    if (!customer) show($('disable-result'), false);

    if (lastState !== null && lastState !== state + '/' + str(enc.mode)) {
      /* an old success report would contradict a state other than "own key, active" */
      if ($('report').dataset.result === 'passed' && !(customer && state === 'active'))
        show($('report'), false);
      let words = state === 'locked' ? 'Encryption state: locked. Your data cannot be read.'
        : state === 'degraded' ? 'Encryption state: degraded. The service cannot use your key.'
          : customer ? 'Encryption state: active, with your own key.'
            : 'Encryption state: active, with service-managed keys.';
      announce(words);
    }
    lastState = state + '/' + str(enc.mode);
    $('updated').textContent = 'Updated ' + (dateFmt ? dateFmt.format(new Date()) : new Date());
  }

  function renderProblem(enc, state) {
    let box = $('problem');
    if (state !== 'locked' && state !== 'degraded') {
      show(box, false);
      return;
    }
    box.dataset.state = state;
    let code = str(enc.reason) || 'KeyUnavailable';
    let text = str(enc.reasonText) || 'the customer key could not be used';
    if (state === 'locked') {
      $('problem-title').textContent = 'Your data is locked';
      $('problem-what').textContent = 'The service cannot use your key, so nobody can read this ' +
        'tenant\'s data. New records are still accepted for a while and become readable once ' +
        'access returns. Nothing is lost.';
    } else {
      let lock = when(enc.lockAt);
      $('problem-title').textContent = 'The service cannot use your key';
      $('problem-what').textContent = 'Your data is still readable from a copy of the key the ' +
        'service holds in memory' + (lock ? ', until ' + lock : '') + '. If the key is still ' +
        'not usable then, the tenant locks and its data cannot be read until access returns.';
    }
    $('problem-reason').textContent = text.charAt(0).toUpperCase() + text.slice(1);
    $('problem-code').textContent = code;
    let ol = $('problem-steps');
    clear(ol);
    fixFor(code, text).forEach(function (s) {
      ol.appendChild(el('li', { text: s }));
    });
    let next = when(enc.nextCheck);
    $('problem-after').textContent = 'The service checks the key again by itself' +
      (next ? ' (next check ' + next + ')' : '') + ' and restores access as soon as the key is ' +
      'usable; this page updates when the state changes.';
    show(box, true);
  }

  const CHECK_LABELS = {
    uri: 'Key URI',
    servicePrincipal: 'Service principal in your directory',
    list: 'List the key\'s versions (permission list)',
    wrap: 'Wrap a test value (permission wrapKey)',
    unwrap: 'Unwrap it again (permission unwrapKey)',
    purgeProtection: 'Purge protection on the vault'
  };

  /* The validation report of an enable: {ok, checks[]} or an error answer. */
  function renderReport(kind, title, summary, fix, checks) {
    let box = $('report');
    box.dataset.result = kind;
    box.setAttribute('role', kind === 'failed' ? 'alert' : 'status');
    $('report-title').textContent = title;
    $('report-summary').textContent = summary;
    $('report-fix').textContent = fix ? 'To fix: ' + fix : '';
    show($('report-fix'), !!fix);
    let ol = $('report-checks');
    clear(ol);
    (Array.isArray(checks) ? checks : []).forEach(function (c) {
      if (!isObj(c)) return;
      let name = str(c.name) || '?';
      let outcome = str(c.outcome);
      if (outcome !== 'passed' && outcome !== 'failed') outcome = 'not run';
      let label = { passed: 'Passed', failed: 'Failed', 'not run': 'Not run' }[outcome];
      let body = el('div', { className: 'check-body' }, [
        el('p', { className: 'check-name', text: CHECK_LABELS[name] || name }),
        str(c.message) ? el('p', { className: 'check-message', text: str(c.message) }) : null,
        outcome === 'failed' && str(c.cause) ?
          el('p', { className: 'check-cause' }, ['Cause: ', el('code', { text: str(c.cause) })]) :
          null,
        outcome === 'failed' && str(c.fix) ?
          el('p', { className: 'check-fix', text: 'Fix: ' + str(c.fix) }) : null
      ]);
      ol.appendChild(el('li', { 'data-check': name, 'data-outcome': outcome }, [
        el('span', { className: 'outcome', text: label }), body
      ]));
    });
    show(ol, ol.childNodes.length > 0);
    show(box, true);
  }

  const ACTION_LABELS = {
    'tenant.create': 'Tenant created',
    'encryption.enable': 'Own key enabled',
    'encryption.enable.refused': 'Own key refused',
    'encryption.disable': 'Own key removed',
    'encryption.roll': 'Key version rolled',
    'encryption.degrade': 'Key access failing',
    'encryption.recover': 'Key access recovered',
    'encryption.lock': 'Tenant locked',
    'encryption.restore': 'Tenant restored',
    'encryption.fold': 'Locked-time records re-keyed',
    'srk.rotate': 'Service key rotated'
  };

  function shortValue(v) {
    if (typeof v === 'string') return clip(/^https:\/\//.test(v) && /\/keys\//.test(v) &&
      v.split('/').length > 5 ? lastSegment(v) : v, 60);
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (v === null) return 'null';
    try {
      return clip(JSON.stringify(v), 60);
    } catch (e) {
      return '…';
    }
  }

  /* Who did it, in words: {text, title}. */
  function actorOf(actor) {
    let a = str(actor);
    if (a === 'monitor') return { text: 'Key monitor (the service)', title: a };
    let app = /(?:^|;)appid=([A-Za-z0-9-]+)/.exec(a);
    if (app) {
      let mine = session && session.app && app[1] === session.app;
      return {
        text: (mine ? 'You (application ' : 'Application ') + clip(app[1], 9) + (mine ? ')' : ''),
        title: a
      };
    }
    return { text: clip(a || '–', 60), title: a };
  }

  /* A one-line summary of an audit event's detail. */
  function summary(action, d) {
    if (!isObj(d)) return '';
    let kv = function (k) {
      return str(d[k]) ? lastSegment(d[k]) : '';
    };
    switch (action) {
      case 'encryption.enable':
        return 'key version ' + (kv('keyVersion') || '?') +
          (kv('previousKeyVersion') ? ' (was ' + kv('previousKeyVersion') + ')' : '');
      case 'encryption.enable.refused':
        return 'check ' + (str(d.check) || '?') + ' failed' +
          (str(d.cause) ? ': ' + str(d.cause) : '') +
          (str(d.keyUri) ? ' — ' + clip(str(d.keyUri), 80) : '');
      case 'encryption.disable':
        return kv('previousKeyVersion') ? 'key version ' + kv('previousKeyVersion') + ' removed' : '';
      case 'encryption.roll':
        return (kv('previousKeyVersion') || '?') + ' → ' + (kv('keyVersion') || '?');
      case 'encryption.degrade':
      case 'encryption.lock':
      case 'encryption.recover':
      case 'encryption.restore':
        return (str(d.from) && str(d.to) ? str(d.from) + ' → ' + str(d.to) : '') +
          (str(d.reason) ? ': ' + str(d.reason) : '') +
          (str(d.reasonText) ? ' — ' + clip(str(d.reasonText), 120) : '');
      default:
        return Object.keys(d).slice(0, 4).map(function (k) {
          return k + ': ' + shortValue(d[k]);
        }).join(', ');
    }
  }

  function renderAudit(res) {
    let rows = $('audit-rows');
    if (res.status !== 200 || !isObj(res.body) || !Array.isArray(res.body.value)) {
      $('audit-error').textContent = 'The key events cannot be shown: ' + describeFailure(res);
      show($('audit-error'), true);
      return;
    }
    show($('audit-error'), false);
    clear(rows);
    let events = res.body.value.filter(isObj);
    events.forEach(function (ev) {
      let action = str(ev.action);
      rows.appendChild(el('tr', { 'data-action': action }, [
        el('td', { 'data-label': 'Time' }, [timeNode(ev.time)]),
        el('td', { 'data-label': 'Actor', text: actorOf(ev.actor).text,
          title: actorOf(ev.actor).title }),
        el('td', { 'data-label': 'Action' }, [
          el('span', null, [ACTION_LABELS[action] || clip(action || '–', 60),
            el('span', { className: 'sub', text: action })])
        ]),
        el('td', { 'data-label': 'Detail', text: summary(action, ev.detail) || '–' })
      ]));
    });
    show($('audit-empty'), events.length === 0);
    show($('audit-table'), events.length > 0);
  }

  /* A success message at the top of the page ('' hides it). */
  function notice(text) {
    let box = $('notice');
    box.textContent = text || '';
    show(box, !!text);
  }

  function pageError(text) {
    let box = $('page-error');
    box.textContent = text || '';
    show(box, !!text);
  }

  /* ------------------------------------------------------------ refresh loop */

  let pollTimer = null;
  let refreshing = false;
  const period = pollPeriod();

  function refresh() {
    if (!session || refreshing) return Promise.resolve();
    refreshing = true;
    let s = session;
    return Promise.all([
      api('GET', tenantPath('/encryption')),
      api('GET', tenantPath('/audit?limit=' + AUDIT_LIMIT))
    ]).then(function (r) {
      if (session !== s) return;
      let enc = r[0];
      if (enc.status === 401) {
        signOut('The service did not accept your token (it may have expired). Sign in again.');
        return;
      }
      if (enc.status === 200 && isObj(enc.body)) {
        pageError('');
        renderEncryption(enc.body);
      } else {
        pageError('The encryption settings cannot be loaded. ' + describeFailure(enc) +
          (enc.status === 0 || enc.status >= 500 ? ' The page keeps retrying.' : ''));
      }
      renderAudit(r[1]);
    }).catch(function (e) {
      pageError('Something went wrong on this page: ' + (e && e.message ? e.message : e) +
        '. The page keeps retrying.');
    }).then(function () {
      refreshing = false;
    });
  }

  function schedule() {
    if (pollTimer !== null) window.clearTimeout(pollTimer);
    pollTimer = null;
    if (!session) return;
    pollTimer = window.setTimeout(function () {
      refresh().then(schedule);
    }, period);
  }

  /* ------------------------------------------------------------ sign in / out */

  function showSignedIn() {
    let exp = session.exp ? new Date(session.exp * 1000) : null;
    $('account-tenant').textContent = session.tid;
    let parts = [];
    parts.push(session.roles.length ? 'roles ' + session.roles.join(', ') : 'no roles');
    if (exp) parts.push((exp.getTime() < Date.now() ? 'expired ' : 'expires ') +
      (dateFmt ? dateFmt.format(exp) : exp.toString()));
    $('account-detail').textContent = parts.join(' · ');
    show($('account'), true);
    show($('signin'), false);
    show($('app'), true);
  }

  function signIn(token, fromLink) {
    let c = decodeToken(token);
    if (c.error) {
      showSignIn(c.error);
      return false;
    }
    session = { token: str(token).trim(), tid: c.tid, roles: c.roles, exp: c.exp, app: c.app };
    storeToken(session.token);
    lastState = null;
    showSignedIn();
    if (c.roles.indexOf('DataEncryption.Admin') < 0)
      pageError('This token does not carry the DataEncryption.Admin role: the service will ' +
        'refuse to show or change the encryption settings.');
    else pageError('');
    announce('Signed in for tenant ' + c.tid + (fromLink ? ' from the sign-in link' : '') + '.');
    refresh().then(schedule);
    $('main').focus();
    return true;
  }

  function showSignIn(message) {
    show($('account'), false);
    show($('app'), false);
    show($('signin'), true);
    let err = $('signin-error');
    err.textContent = message || '';
    show(err, !!message);
    $('token').setAttribute('aria-invalid', message ? 'true' : 'false');
    if (message) err.setAttribute('role', 'alert');
    else err.removeAttribute('role');
  }

  function signOut(message) {
    session = null;
    storeToken(null);
    if (pollTimer !== null) window.clearTimeout(pollTimer);
    pollTimer = null;
    lastState = null;
    pageError('');
    notice('');
    show($('report'), false);
    show($('disable-result'), false);
    $('token').value = '';
    $('key-uri').value = '';
    clear($('audit-rows'));
    showSignIn(message || '');
    announce(message ? message : 'Signed out.');
    $('token').focus();
  }

  /* ------------------------------------------------------------ enable */

  let busy = false;

  function setBusy(on, button, progress) {
    busy = on;
    button.disabled = on;
    button.setAttribute('aria-busy', on ? 'true' : 'false');
    if (progress) show(progress, on);
  }

  function onEnable(ev) {
    ev.preventDefault();
    if (!session || busy) return;
    let input = $('key-uri');
    let uri = input.value.trim();
    if (uri === '') {
      input.setAttribute('aria-invalid', 'true');
      renderReport('failed', 'Enter a key URI', 'Paste the key identifier of an RSA key from ' +
        'your key vault.', '', []);
      input.focus();
      return;
    }
    input.setAttribute('aria-invalid', 'false');
    notice('');
    setBusy(true, $('enable-button'), $('enable-progress'));
    show($('report'), false);
    api('PUT', tenantPath('/encryption'), { keyUri: uri }, CHANGE_TIMEOUT_MS).then(function (res) {
      if (res.status === 401) {
        signOut('The service did not accept your token (it may have expired). Sign in again.');
        return;
      }
      let body = isObj(res.body) ? res.body : {};
      if (res.status === 200) {
        let v = isObj(body.validation) ? body.validation : {};
        renderReport('passed', 'Your own key is in use',
          'Every check passed. Key version ' + (lastSegment(body.keyVersion) || '?') +
          ' now wraps this tenant\'s keys.', '', v.checks);
        announce('Your own key is now in use.');
        input.value = '';
      } else {
        let e = errorOf(res);
        let failed = (e.checks || []).filter(function (c) {
          return isObj(c) && c.outcome === 'failed';
        })[0];
        let title = res.status === 423 ? 'The tenant is locked'
          : failed ? 'Check “' + (CHECK_LABELS[failed.name] || str(failed.name)) + '” failed'
            : 'The key was not enabled';
        if (failed && str(e.code)) title += ' (' + str(e.code) + ')';
        let msg = e.message || describeFailure(res);
        if (res.status === 0 || res.status === 403) msg = describeFailure(res);
        renderReport('failed', title, msg.charAt(0).toUpperCase() + msg.slice(1),
          failed ? '' : e.fix, e.checks || []);
        if (failed && str(failed.name) === 'uri') input.setAttribute('aria-invalid', 'true');
        announce(title + '.');
      }
      $('report').focus();
    }).catch(function (e) {
      renderReport('failed', 'The key was not enabled', String(e && e.message ? e.message : e),
        '', []);
    }).then(function () {
      setBusy(false, $('enable-button'), $('enable-progress'));
      return refresh();
    });
  }

  /* ------------------------------------------------------------ disable */

  let dialogOpener = null;

  function openDialog() {
    let d = $('disable-dialog');
    dialogOpener = document.activeElement;
    if (typeof d.showModal === 'function') d.showModal();
    else d.setAttribute('open', '');
    $('dlg-cancel').focus();
  }

  function closeDialog() {
    let d = $('disable-dialog');
    if (typeof d.close === 'function' && d.open) d.close();
    else d.removeAttribute('open');
    if (dialogOpener && typeof dialogOpener.focus === 'function') dialogOpener.focus();
  }

  function showDisableResult(kind, text) {
    let box = $('disable-result');
    box.dataset.kind = kind;
    box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    box.textContent = text;
    show(box, true);
  }

  function onDisableConfirm() {
    if (!session || busy) return;
    closeDialog();
    setBusy(true, $('disable-button'), null);
    show($('disable-result'), false);
    notice('');
    api('DELETE', tenantPath('/encryption'), undefined, CHANGE_TIMEOUT_MS).then(function (res) {
      if (res.status === 401) {
        signOut('The service did not accept your token (it may have expired). Sign in again.');
        return;
      }
      if (res.status === 200) {
        let m = isObj(res.body) ? str(res.body.message) : '';
        notice((m ? m.charAt(0).toUpperCase() + m.slice(1) :
          'Your own key was removed; your data stays encrypted with service-managed keys') + '.');
        show($('report'), false);
        announce('Your own key was removed. Your data stays encrypted with service-managed keys.');
      } else {
        let e = errorOf(res);
        let text = res.status === 423
          ? (e.message || 'the tenant is locked: restore access to its key first')
          : 'The key was not removed. ' + describeFailure(res);
        text = text.charAt(0).toUpperCase() + text.slice(1);
        showDisableResult('error', /[.!]$/.test(text) ? text : text + '.');
      }
    }).then(function () {
      setBusy(false, $('disable-button'), null);
      let r = $('disable-result');
      if (!r.hidden && session) r.focus();
      else if (!$('notice').hidden && session) $('notice').focus();
      return refresh();
    });
  }

  /* ------------------------------------------------------------ start */

  function start() {
    $('signin-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      let t = $('token').value.trim();
      if (t === '') {
        showSignIn('Paste an access token first.');
        $('token').focus();
        return;
      }
      if (!signIn(t, false)) $('token').focus();
    });
    $('signout').addEventListener('click', function () {
      signOut('');
    });
    $('enable-form').addEventListener('submit', onEnable);
    $('key-uri').addEventListener('input', function () {
      $('key-uri').setAttribute('aria-invalid', 'false');
    });
    $('disable-button').addEventListener('click', openDialog);
    $('dlg-cancel').addEventListener('click', closeDialog);
    $('dlg-confirm').addEventListener('click', onDisableConfirm);
    $('disable-dialog').addEventListener('cancel', function (ev) {
      ev.preventDefault();
      closeDialog();
    });

    /* a sign-in link opened in a tab that already shows the page */
    window.addEventListener('hashchange', function () {
      let t = takeTokenFromFragment();
      if (t) signIn(t, true);
    });

    let fromLink = takeTokenFromFragment();
    let token = fromLink !== null ? fromLink : loadToken();
    if (token) signIn(token, fromLink !== null);
    else showSignIn('');
    document.documentElement.dataset.ready = 'true';
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
