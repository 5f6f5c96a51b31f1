// Package admin serves the relay's operator API on the admin listener and
// provides the Go client and `relay admin` command line that drive it.
//
// # Authentication
//
// Every path under /admin/ requires the admin token, either as
// "Authorization: Bearer <token>" or, like the reference relay, as HTTP
// Basic with user "admin" and the token as password; anything else gets
// 401 before routing, so unknown paths reveal nothing either. Tokens are
// compared in constant time (over their SHA-256, so length leaks nothing).
// Server.Protect puts the same check in front of other handlers the caller
// mounts (metrics, pprof).
//
// # Endpoints
//
// Paths are the reference relay's where it has one; inputs are JSON bodies,
// and the reference's query parameters (host, block, enabled) are accepted
// too so existing scripts keep working. Actions answer {"success":"true"},
// errors {"error": "<Name>", "message": "..."}.
//
//	GET  /admin/subs/getUpstreamConns              ["host", ...]
//	POST /admin/subs/killUpstream    {host, block}
//	GET  /admin/subs/getEnabled                    {"enabled": bool}   public requestCrawl
//	POST /admin/subs/setEnabled      {enabled}
//	GET  /admin/pds/list             ?cursor&limit {hosts:[HostInfo], cursor?}
//	POST /admin/pds/requestCrawl     {hostname}    bypasses the public limits
//	POST /admin/pds/changeLimits     {host, repo_limit?, trusted?, per_second?}
//	POST /admin/pds/block            {host}
//	POST /admin/pds/unblock          {host}
//	POST /admin/pds/resetCursor      {host}
//	POST /admin/repo/takeDown        {did}         (alias /admin/repo/takedown)
//	POST /admin/repo/reverseTakedown {did}
//	GET  /admin/repo/takedowns       ?cursor       {dids:[...], cursor?}
//	POST /admin/repo/resync          {did}
//	GET  /admin/consumers/list                     [Consumer]
//	POST /admin/domain/ban           {domain}      (alias /admin/subs/banDomain)
//	POST /admin/domain/unban         {domain}      (alias /admin/subs/unbanDomain)
//	GET  /admin/domain/list                        {"banned_domains": [...]} (alias /admin/subs/listDomainBans)
//
// Reads come from the store; every action goes through the Engine, which
// owns upstream connections and emits the events an action implies.
//
// # Concurrency
//
// A Server is immutable after New and safe for concurrent use; so is a
// Client once its fields are set.
package admin
