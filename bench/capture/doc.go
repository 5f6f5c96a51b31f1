// Package capture records firehose (com.atproto.sync.subscribeRepos)
// traffic into compact files and reads it back as a stream, so relays can
// be measured by replaying real traffic (see bench/replay).
//
// It holds the file format (Writer, Reader, Open), an importer for the
// shared capture folders (ImportShared), the Recorder that writes captures
// from live WebSocket endpoints, and PeekFrame, which decodes the few
// fields of a frame tooling needs. Open and ImportShared both return a
// Capture, so everything downstream works on either.
//
// # Format
//
// A capture file is zstd-compressed and made of three parts:
//
//	file     := zstd(body) zstd(snapshot) footer
//	body     := "RLYCAP" u16be(version=1) header record* end trailer
//	header   := varint(created unix ns) str(note) uvarint(nsources)
//	            { str(url) str(hostname) uvarint(frames+1) }*nsources   (0 = count unknown)
//	record   := uvarint(source+1) varint(recv ns − previous recv ns) uvarint(seq)
//	            uvarint(len) frame
//	end      := uvarint(0)
//	trailer  := uvarint(frames) uvarint(frame bytes) { uvarint(frames) }*nsources
//	snapshot := "RLYIDS" u16be(version=1) uvarint(ndocs) { str(did) str(did document JSON) }*ndocs
//	footer   := 5e 2a 4d 18  u32le(16)  u64le(offset of the snapshot's zstd frame)  "RLYCAPFT"
//	str      := uvarint(len) bytes
//
// uvarint and varint are Go's encoding/binary forms (LEB128; varint is
// zig-zag). The first record's time delta is from the header's created
// time; deltas may be negative because sources are recorded concurrently.
// seq is the frame's own seq (0 when it has none); frame is the WebSocket
// binary message exactly as received.
//
// The footer is a zstd skippable frame, so `zstd -d` on a capture prints
// the body and the snapshot and nothing else. The snapshot (DID → DID
// document) lives at the end because the Recorder only learns which DIDs
// matter as it records; the footer lets Open find it without decompressing
// the records.
//
// # Worked example
//
// A capture created at Unix time 1 s with note "hi", one source
// ws://h:1 (hostname h:1, count unknown) and one 3-byte frame a1 62 6f with
// seq 7 received 1,500 ns after creation decompresses to:
//
//	52 4c 59 43 41 50 00 01   "RLYCAP", version 1
//	80 a8 d6 b9 07            created: varint(1,000,000,000)
//	02 68 69                  note "hi"
//	01                        1 source
//	08 77 73 3a 2f 2f 68 3a 31  url "ws://h:1"
//	03 68 3a 31               hostname "h:1"
//	00                        frames unknown
//	01 b8 17 07 03 a1 62 6f   record: source 0, +1500 ns, seq 7, 3 bytes
//	00                        end of records
//	01 03 01                  trailer: 1 frame, 3 bytes; source 0: 1 frame
//
// followed by the snapshot section in a second zstd frame and the footer.
//
// # Invariants
//
// Readers check every count and limit and fail with a distinct error
// (ErrTruncated, ErrCorrupt, ErrFrameTooLarge, ErrLimit, ErrSourceIndex,
// ErrSeqRange, ErrCountMismatch, ...): the trailer must match the records
// read, a source's count known in the header must match too, nothing may
// follow the snapshot, and no input makes a reader panic or allocate more
// than its limits. A Reader's memory is one zstd window (at most 16 MiB,
// 8 MiB as written) plus the largest frame, whatever the file's size.
package capture
