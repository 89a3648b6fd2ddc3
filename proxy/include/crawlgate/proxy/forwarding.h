// Who is the client, and what we tell the upstream about it. Boost-free.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "crawlgate/rules/ip_address.h"
#include "crawlgate/rules/request_view.h"

namespace crawlgate::proxy {

bool is_trusted(const IpAddress& address, std::span<const Cidr> trusted);

// The socket peer, or, only when the peer is a trusted proxy, the right-most address of
// X-Forwarded-For that is not itself trusted (all X-Forwarded-For fields, in order, as one list).
// A malformed element stops the walk: the address to its right is the last one we can vouch for.
IpAddress resolve_client_ip(const IpAddress& peer, std::span<const HeaderField> headers,
                            std::span<const Cidr> trusted);

// 32 lowercase hex digits (128 random bits), like nginx's $request_id.
std::string generate_request_id();

// An id a trusted peer sent is reused only if it is short and printable, so it cannot inject
// anything into logs or headers.
bool is_acceptable_request_id(std::string_view id);

}  // namespace crawlgate::proxy
