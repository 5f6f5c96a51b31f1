// Package repo writes atproto repositories the way a PDS does, for tests,
// the synthetic PDS fleet and benchmarks: it keeps an in-memory MST of
// record CIDs, signs a version-3 commit per batch of writes, and hands back
// the sync-1.1 #commit (spec digest §10.1, §12.4), a #sync for the current
// state (§10.2) and the full-repository CAR of getRepo (§5.2). The relay
// itself never writes repositories.
//
// # Commit object
//
// A commit is the canonical DAG-CBOR map, keys in the order
//
//	did  rev  sig  data  prev  version
//	text text b64  link  null  3
//
// signed (ECDSA over SHA-256, 64-byte low-S r‖s) over the same map without
// "sig", whose header then counts 5 pairs instead of 6. The commit CID is the
// blessed dag-cbor CID of the signed bytes.
//
// # CAR slices
//
// The #commit CAR has one root, the commit CID, then the commit block, the
// MST nodes mst.Tree.Commit lists for the batch (every new node plus the
// neighbours inversion needs) and the record blocks the batch created or
// updated. since is the previous rev and prevData the previous data root;
// both are absent on the first commit. A #sync CAR holds only the commit
// block; an export holds the commit, every MST node and every record.
//
// # Ownership
//
// A Repo belongs to one goroutine. Everything Apply, SyncCommit and
// ExportCAR return is freshly allocated and owned by the caller.
package repo
