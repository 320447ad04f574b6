#include "kv/wal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/bytes.h"
#include "common/crc32.h"

namespace coord::kv {

namespace {

constexpr size_t kHeaderBytes = 8;  // le32 length, le32 crc

[[noreturn]] void fail(const std::string& what, const std::string& path) {
    throw WalError("write-ahead log: " + what + " " + path + ": " + std::strerror(errno));
}

void fsyncDir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("cannot open directory", dir);
    int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) fail("cannot sync directory", dir);
}

std::string readFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open", path);
    std::string data;
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            fail("cannot read", path);
        }
        if (n == 0) break;
        data.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return data;
}

// Writes zeros over [from, to) of `fd`. Segments are filled with zeros rather than given
// fallocate's unwritten extents: overwriting written blocks changes no metadata, so each
// fdatasync flushes data only (measured on ext4: about 100 against 150 µs per append + sync,
// and a quarter less CPU), where an unwritten extent must be converted, and the extent tree
// written, on every sync.
void zeroFill(int fd, size_t from, size_t to, const std::string& path) {
    static const std::string zeros(size_t{256} << 10, '\0');
    while (from < to) {
        size_t n = std::min(zeros.size(), to - from);
        ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(from));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fail("cannot allocate", path);
        from += static_cast<size_t>(w);
    }
}

}  // namespace

Wal::Wal(std::string dir, const ReplayFn& replay, size_t segmentBytes)
    : dir_(std::move(dir)), segmentBytes_(segmentBytes) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) throw WalError("write-ahead log: cannot create " + dir_ + ": " + ec.message());
    size_t end = replayAll(replay);
    bool reuse = !segments_.empty() && end < segmentBytes_ / 2;
    if (!segments_.empty()) cutNewest(end, reuse);
    if (!reuse) openNewSegment();
}

void Wal::cutNewest(size_t end, bool reuse) {
    const std::string path = segmentPath(segments_.back().seq);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail("cannot open", path);
    // Drop everything after the last valid record (a torn batch, or bytes of one behind a
    // record whose header never reached the disk), so no later replay reads past it. A reused
    // segment is zeroed again: the rest reads as zeros, and a replay stops right after the
    // records written from now on.
    if (::ftruncate(fd, static_cast<off_t>(end)) != 0) {
        ::close(fd);
        fail("cannot cut", path);
    }
    if (reuse) {
        try {
            zeroFill(fd, end, segmentBytes_, path);
        } catch (...) {
            ::close(fd);
            throw;
        }
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        fail("cannot sync", path);
    }
    if (!reuse) {
        ::close(fd);
        return;
    }
    fd_ = fd;
    offset_ = end;
}

Wal::~Wal() {
    if (fd_ >= 0) ::close(fd_);
}

std::string Wal::segmentPath(uint64_t seq) const {
    char name[32];
    std::snprintf(name, sizeof name, "%016" PRIx64 ".wal", seq);
    return dir_ + "/" + name;
}

size_t Wal::replayAll(const ReplayFn& replay) {
    size_t newestEnd = 0;
    std::vector<uint64_t> seqs;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
        std::string name = e.path().filename().string();
        if (name.size() != 20 || name.substr(16) != ".wal") continue;
        uint64_t seq = 0;
        if (std::sscanf(name.c_str(), "%16" SCNx64, &seq) != 1) continue;
        seqs.push_back(seq);
    }
    std::sort(seqs.begin(), seqs.end());
    for (size_t s = 0; s < seqs.size(); ++s) {
        const std::string path = segmentPath(seqs[s]);
        const bool newest = s + 1 == seqs.size();
        std::string data = readFile(path);
        size_t pos = 0;
        bool torn = false;
        uint64_t maxIndex = 0;
        while (pos + kHeaderBytes <= data.size()) {
            uint32_t len = loadLe32(data.data() + pos);
            if (len == 0) break;  // the preallocated, never written part
            uint32_t crc = loadLe32(data.data() + pos + 4);
            if (len > data.size() - pos - kHeaderBytes ||
                crc32Update(0, data.data() + pos + kHeaderBytes, len) != crc) {
                torn = true;
                break;
            }
            std::string_view body(data.data() + pos + kHeaderBytes, len);
            maxIndex = std::max(maxIndex, replay(static_cast<uint8_t>(body[0]), body.substr(1)));
            pos += kHeaderBytes + len;
        }
        if (torn) {
            if (!newest) {
                throw WalError("write-ahead log: segment " + path + " is corrupt at offset " +
                               std::to_string(pos) + " (not the newest segment)");
            }
            // A batch whose fdatasync never completed: nothing in it was acknowledged. The
            // constructor cuts it off (cutNewest).
        }
        segments_.push_back({seqs[s], maxIndex});
        newestEnd = pos;
    }
    return newestEnd;
}

void Wal::openNewSegment() {
    uint64_t seq = segments_.empty() ? 1 : segments_.back().seq + 1;
    const std::string path = segmentPath(seq);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot create", path);
    // Written full of zeros: appends then leave the file's size and extents alone, so
    // fdatasync flushes data only (see zeroFill).
    try {
        zeroFill(fd, 0, segmentBytes_, path);
    } catch (...) {
        ::close(fd);
        ::unlink(path.c_str());
        throw;
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        fail("cannot sync", path);
    }
    fsyncDir(dir_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    offset_ = 0;
    segments_.push_back({seq, 0});
}

void Wal::add(uint8_t type, std::string_view payload, uint64_t index) {
    const char t = static_cast<char>(type);
    appendLe32(buffer_, static_cast<uint32_t>(1 + payload.size()));
    appendLe32(buffer_, crc32Update(crc32Update(0, &t, 1), payload.data(), payload.size()));
    buffer_.push_back(t);
    buffer_.append(payload);
    bufferMaxIndex_ = std::max(bufferMaxIndex_, index);
}

Wal::Batch Wal::take() {
    Batch b{fd_, offset_, std::move(buffer_), segmentPath(segments_.back().seq)};
    buffer_.clear();
    offset_ += b.bytes.size();
    auto& seg = segments_.back();
    seg.maxIndex = std::max(seg.maxIndex, bufferMaxIndex_);
    bufferMaxIndex_ = 0;
    return b;
}

void Wal::write(const Batch& b) {
    size_t done = 0;
    while (done < b.bytes.size()) {
        ssize_t n = ::pwrite(b.fd, b.bytes.data() + done, b.bytes.size() - done,
                             static_cast<off_t>(b.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("cannot write", b.path);
        done += static_cast<size_t>(n);
    }
    // A batch larger than the preallocation grows the file: the next fdatasync then also
    // flushes the new size (fdatasync covers metadata needed to read the data back).
}

void Wal::sync(int fd, const std::string& path) {
    if (::fdatasync(fd) != 0) fail("cannot sync", path);
}

void Wal::flush(bool sync) {
    if (!buffer_.empty()) write(take());
    if (sync) Wal::sync(fd_, segmentPath(segments_.back().seq));
}

void Wal::rotateIfFull(const std::function<std::vector<Record>()>& header) {
    if (offset_ + buffer_.size() < segmentBytes_) return;
    // The old segment must be complete on disk before the new one is relied upon: only the
    // newest segment may end torn.
    flush(true);
    openNewSegment();
    for (const auto& r : header())
        add(r.type, r.payload);
}

void Wal::release(uint64_t index) {
    removeFiles(detachReleased(index));
}

std::vector<std::string> Wal::detachReleased(uint64_t index) {
    std::vector<std::string> paths;
    while (segments_.size() > 1 && segments_.front().maxIndex <= index) {
        paths.push_back(segmentPath(segments_.front().seq));
        segments_.erase(segments_.begin());
    }
    return paths;
}

void Wal::removeFiles(const std::vector<std::string>& paths) {
    for (const auto& path : paths)
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail("cannot remove", path);
}

}  // namespace coord::kv
