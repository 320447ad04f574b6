// A temporary directory removed (with its contents) when the object goes away.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace coord::test {

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "coord-test-").string() +
                           std::string(6, 'X');  // mkdtemp template
        char* made = mkdtemp(tmpl.data());
        if (!made) std::abort();
        path_ = made;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

  private:
    std::filesystem::path path_;
};

}  // namespace coord::test
