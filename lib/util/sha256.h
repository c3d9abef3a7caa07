#pragma once
// SHA-256 through OpenSSL's libcrypto (Debian's libssl-dev), for the digests model cards list.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace anvil::util {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(std::span<const uint8_t> bytes);
  void update(const void* data, size_t size) { update({static_cast<const uint8_t*>(data), size}); }
  std::string hex();  // lower-case, as sha256sum prints it; the object is spent afterwards

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::span<const uint8_t> bytes);

}  // namespace anvil::util
