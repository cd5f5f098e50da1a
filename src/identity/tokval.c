/* SPDX-License-Identifier: Apache-2.0 */
#include "identity/tokval.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "identity/jwks.h"

struct atr_tokval {
    struct atr_jwks_cache *jwks;
    const struct atr_clock *clock;
    char authority[ATR_TOKVAL_AUTHORITY_MAX];
    char audience[ATR_TOKVAL_AUDIENCE_MAX];
    char issuer_template[ATR_TOKVAL_AUTHORITY_MAX + 32];
};

atr_status atr_tokval_new(struct atr_tokval **out, const char *authority, const char *ca_file,
                          const char *audience, const struct atr_clock *clock, struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    *out = NULL;
    if (authority == NULL || strncmp(authority, "https://", 8) != 0 ||
        strlen(authority) >= ATR_TOKVAL_AUTHORITY_MAX)
        return atr_err_set(err, ATR_E_CONFIG,
                           "the identity authority must be an https URL of at most %d bytes",
                           ATR_TOKVAL_AUTHORITY_MAX - 1);
    if (audience == NULL || audience[0] == '\0' || strlen(audience) >= ATR_TOKVAL_AUDIENCE_MAX)
        return atr_err_set(err, ATR_E_CONFIG, "a token audience is required");
    struct atr_tokval *v = atr_calloc(1, sizeof(*v));
    if (v == NULL)
        return ATR_E_NOMEM;
    v->clock = clock;
    snprintf(v->authority, sizeof(v->authority), "%s", authority);
    size_t al = strlen(v->authority);
    while (al > 8 && v->authority[al - 1] == '/')
        v->authority[--al] = '\0';
    snprintf(v->audience, sizeof(v->audience), "%s", audience);
    snprintf(v->issuer_template, sizeof(v->issuer_template), "%s/{tenantid}/v2.0", v->authority);
    char uri[ATR_TOKVAL_AUTHORITY_MAX + 64];
    snprintf(uri, sizeof(uri), "%s/common/discovery/v2.0/keys", v->authority);
    struct atr_jwks_cache_opts jo;
    memset(&jo, 0, sizeof(jo));
    jo.jwks_uri = uri;
    jo.ca_file = ca_file;
    jo.min_refresh_interval_ms = 30000;
    jo.retry_interval_ms = 2000;
    jo.clock = clock;
    atr_status rc = atr_jwks_cache_new(&v->jwks, &jo, err);
    if (rc != ATR_OK) {
        atr_free(v);
        return rc;
    }
    *out = v;
    return ATR_OK;
}

void atr_tokval_free(struct atr_tokval *v)
{
    if (v == NULL)
        return;
    atr_jwks_cache_free(v->jwks);
    atr_free(v);
}

const char *atr_tokval_authority(const struct atr_tokval *v)
{
    return v->authority;
}

atr_status atr_tokval_verify(struct atr_jwt_claims *out, struct atr_tokval *v, const char *token,
                             struct atr_err *err)
{
    struct atr_jwks_verify_opts vo;
    memset(&vo, 0, sizeof(vo));
    vo.jwt.clock = v->clock;
    vo.jwt.audience = v->audience;
    vo.jwt.skew_s = 300;
    vo.jwt.require_exp = 1;
    vo.issuer_template = v->issuer_template;
    return atr_jwks_cache_verify(out, v->jwks, token, strlen(token), &vo, err);
}
