// BackgroundThread: one named thread that runs posted jobs in order, started by the first job.
// Destroying it runs what is still queued, then joins: a job may use whatever outlives the
// BackgroundThread's owner's destructor body.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace coord {

class BackgroundThread {
  public:
    // `name`: the thread's name (top -H, perf), at most 15 characters.
    explicit BackgroundThread(std::string name) : name_(std::move(name)) {}

    ~BackgroundThread() {
        std::thread t;
        {
            std::lock_guard lock(mu_);
            stop_ = true;
            t = std::move(thread_);
        }
        wake_.notify_all();
        if (t.joinable()) t.join();
    }

    BackgroundThread(const BackgroundThread&) = delete;
    BackgroundThread& operator=(const BackgroundThread&) = delete;

    // Runs `job` after the jobs posted before it. Jobs must not throw.
    void post(std::function<void()> job) {
        {
            std::lock_guard lock(mu_);
            if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
            queue_.push_back(std::move(job));
        }
        wake_.notify_one();
    }

  private:
    void run() {
        pthread_setname_np(pthread_self(), name_.c_str());
        std::unique_lock lock(mu_);
        for (;;) {
            wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping, and nothing left
            std::function<void()> job = std::move(queue_.front());
            queue_.pop_front();
            lock.unlock();
            job();
            job = nullptr;  // what it holds goes on this thread too
            lock.lock();
        }
    }

    const std::string name_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> queue_;  // under mu_
    bool stop_ = false;                        // under mu_
    std::thread thread_;                       // under mu_
};

}  // namespace coord
