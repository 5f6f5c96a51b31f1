// Package admin serves the relay's operator API and provides the Go client
// and `relay admin` command line that drive it. Paths, methods,
// authentication and answers are the reference relay's (indigo cmd/relay),
// so its admin web UI, goat's `relay admin` commands and operators' scripts
// work unchanged; this relay's richer listings are one query flag away.
//
// # Authentication
//
// Every path under /admin/ requires an admin token, as HTTP Basic with
// user "admin" and the token as password (the reference's scheme) or as
// "Authorization: Bearer <token>"; anything else gets 401
// {"error":"Unauthorized"} before routing, so unknown paths reveal nothing
// either. Several tokens may be valid at once (Config.Tokens, the
// reference's comma-separated RELAY_ADMIN_PASSWORD) so a secret can be
// rotated. Tokens are compared in constant time (over their SHA-256, so
// length leaks nothing), against every accepted token. Server.Protect puts
// the same check in front of other handlers the caller mounts (metrics,
// pprof).
//
// # Endpoints
//
// Inputs are JSON bodies, and the reference's query parameters (host,
// block, enabled, limit) are accepted too. Actions answer
// {"success":"true"}; errors {"error": "<message>"} with the reference's
// status, except pds/requestCrawl, which like the reference answers as its
// XRPC procedure does: {"error": "<Name>", "message": "..."}.
//
//	GET  /admin/subs/getUpstreamConns              ["host", ...]
//	POST /admin/subs/killUpstream    {host, block}
//	GET  /admin/subs/getEnabled                    {"enabled": bool}   public requestCrawl
//	POST /admin/subs/setEnabled      {enabled}
//	GET  /admin/subs/perDayLimit                   {"limit": n}        new hosts per day
//	POST /admin/subs/setPerDayLimit  ?limit=N      (until restart, as in the reference)
//	GET  /admin/pds/list             ?cursor&limit [RefHost]  (?format=relay: {hosts:[HostInfo], cursor?})
//	POST /admin/pds/requestCrawl     {hostname}    bypasses the public limits
//	POST /admin/pds/changeLimits     {host, repo_limit?, trusted?, per_second?}
//	POST /admin/pds/block            {host}
//	POST /admin/pds/unblock          {host}
//	POST /admin/pds/resetCursor      {host}
//	POST /admin/repo/takeDown        {did}         (alias /admin/repo/takedown)
//	POST /admin/repo/reverseTakedown {did}
//	GET  /admin/repo/takedowns       ?cursor       {dids:[...], cursor?: number}
//	POST /admin/repo/resync          {did}
//	GET  /admin/consumers/list                     [RefConsumer]  (?format=relay: [Consumer])
//	POST /admin/domain/ban           {domain}      (alias /admin/subs/banDomain)
//	POST /admin/domain/unban         {domain}      (alias /admin/subs/unbanDomain)
//	GET  /admin/domain/list                        {"banned_domains": [...]} (alias /admin/subs/listDomainBans)
//
// RefHost documents how this relay's host record maps onto the reference's
// fields and which of them it cannot know. The reference relay version
// read (indigo v0.0.0-20260605210604-af2fec94f34c) has no
// alerts/accountLimitSent endpoint and no account_limit_alerts_silenced
// field, so neither exists here.
//
// Reads come from the store; every action goes through the Engine, which
// owns upstream connections and emits the events an action implies.
//
// # Concurrency
//
// A Server is immutable after New and safe for concurrent use; so is a
// Client once its fields are set.
package admin
