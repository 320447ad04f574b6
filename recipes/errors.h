// How a recipe call ends when it does not succeed.
#pragma once

#include <stdexcept>
#include <string>

#include "common/result.h"
#include "rpc/client.h"

namespace coord {

struct RecipeError {
    enum class Kind {
        Timeout,      // the deadline passed first
        Canceled,     // cancel() was called from another thread
        SessionLost,  // the session's lease is gone: nothing it held is held any more
        NotHeld,      // the operation needs ownership (unlock, proclaim) that this object lacks
        Busy,         // tryLock found the lock held; DoubleBarrier found the round full
        Client,       // the cluster could not be reached or refused a request (see `client`)
    };
    Kind kind;
    std::string message;
    Error client{};  // for Kind::Client

    std::string describe() const;
};

template <typename T>
using RecipeResult = Result<T, RecipeError>;

// Thrown by the std-style members (lock(), campaign() without a result type, constructors)
// that have no other way to report a failure.
class RecipeException : public std::runtime_error {
  public:
    explicit RecipeException(RecipeError e)
        : std::runtime_error(e.describe()), error_(std::move(e)) {}
    const RecipeError& error() const { return error_; }

  private:
    RecipeError error_;
};

}  // namespace coord
