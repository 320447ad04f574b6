// Wal: an append-only log of typed records in preallocated segment files, made durable with one
// sequential fdatasync per batch. The Raft log storage keeps its entries, hard state and
// snapshot marks here (see raft_storage.h); the state machine lives in LMDB.
//
// Layout: a directory of segments named by a 16-digit hex sequence number ("%016x.wal"). Each
// segment is written full of zeros when created, so appending changes neither its size nor its
// extents and fdatasync flushes data only. A record is le32 length (of type + payload), le32 CRC-32
// (of type + payload), u8 type, payload; a zero length marks the end of the written part.
//
// Recovery: the constructor replays every record of every segment in order. Only the newest
// segment may end in a torn record (a batch whose fdatasync never completed): it is cut off
// there. A bad record in an older segment is corruption and throws WalError. Writing continues
// at the end of the newest segment, whose rest is first discarded and written with zeros again (so
// it reads as zeros: no bytes of an unfinished batch can ever follow new records), or in a new
// segment when the newest is more than half full.
//
// Threading: one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace coord::kv {

class WalError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Wal {
  public:
    struct Record {
        uint8_t type = 0;
        std::string payload;
    };
    // Called once per record, in order; returns the highest Raft index the record mentions.
    using ReplayFn = std::function<uint64_t(uint8_t type, std::string_view payload)>;

    // Opens (creating it if needed) the log in `dir` and replays its records into `replay`.
    // Throws WalError when the directory or a segment cannot be used or an old segment is
    // corrupt.
    Wal(std::string dir, const ReplayFn& replay, size_t segmentBytes = size_t{16} << 20);
    ~Wal();
    Wal(const Wal&) = delete;
    Wal& operator=(const Wal&) = delete;

    // Buffers a record; `index` is the highest Raft index it mentions (0 for none), so that
    // release() knows when the segment holding it is no longer needed.
    void add(uint8_t type, std::string_view payload, uint64_t index = 0);
    // Writes the buffered records; with `sync`, waits until they are on disk (fdatasync).
    // Throws WalError on an I/O failure (the log is then unusable: the member must stop).
    void flush(bool sync = true);
    bool hasBuffered() const { return !buffer_.empty(); }

    // Writing on another thread: take() hands the buffered records over as a Batch (their
    // place in the current segment is reserved), and Wal::write() puts a batch on disk, from
    // any thread. Batches must be written in the order they were taken, and every batch taken
    // must be written before this Wal writes or syncs on its own (flush, rotateIfFull) or is
    // destroyed.
    struct Batch {
        int fd = -1;
        size_t offset = 0;
        std::string bytes;
        std::string path;  // for error messages
    };
    Batch take();
    static void write(const Batch& batch);
    static void sync(int fd, const std::string& path);
    // The next rotateIfFull() will start a new segment (and write and sync on its own).
    bool rotationDue() const { return offset_ + buffer_.size() >= segmentBytes_; }

    // Starts a new segment when the current one is full; `header` gives the records that must
    // open it (the state a reader needs when the older segments are gone).
    void rotateIfFull(const std::function<std::vector<Record>()>& header);
    // Deletes whole segments, oldest first, whose records mention only indexes ≤ `index`
    // (never the segment being written). The caller must first have made a record durable
    // that lets a replay start without them.
    void release(uint64_t index);
    // The same in two steps: forgets those segments now and returns their paths, to be
    // deleted (removeFiles) later, on any thread. Unlinking a full segment takes milliseconds.
    std::vector<std::string> detachReleased(uint64_t index);
    static void removeFiles(const std::vector<std::string>& paths);

    size_t segmentCount() const { return segments_.size(); }
    const std::string& dir() const { return dir_; }

  private:
    struct Segment {
        uint64_t seq = 0;
        uint64_t maxIndex = 0;
    };
    std::string segmentPath(uint64_t seq) const;
    void openNewSegment();
    // Replays every segment; returns where the valid records of the newest one end.
    size_t replayAll(const ReplayFn& replay);
    // Cuts the newest segment after its last valid record; with `reuse`, writing goes on there.
    void cutNewest(size_t end, bool reuse);

    std::string dir_;
    size_t segmentBytes_;
    std::vector<Segment> segments_;  // oldest first; the last one is written
    int fd_ = -1;
    size_t offset_ = 0;  // write position in the current segment
    std::string buffer_;
    uint64_t bufferMaxIndex_ = 0;
};

}  // namespace coord::kv
