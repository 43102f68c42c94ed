// Start-of-job checks that every rank was started the same way. A rank whose config differs from
// rank 0's would otherwise train a different model and deadlock or diverge much later.
#pragma once

#include <string>

#include "kiln/dist/communicator.h"

namespace kiln::dist {

// Throws on every rank (never only on some, which would leave the others waiting) when `text`
// is not the same on all ranks. The message names the differing ranks and, on each of them, the
// first line where its text differs from rank 0's. `what` names the text ("config").
void check_same_text(Communicator& comm, const std::string& text, const std::string& what);

// Throws on every rank when `ok` is false on any rank, with this rank's `message` where it
// failed and a pointer to the failing ranks elsewhere.
void check_all(Communicator& comm, bool ok, const std::string& message);

}  // namespace kiln::dist
