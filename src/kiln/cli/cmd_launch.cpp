// kiln launch: starts `kiln COMMAND...` on N ranks through Open MPI's mpirun, which stays the
// real launcher (the same job runs under Slurm or a Kubernetes MPI operator with their own).
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "kiln/cli/commands.h"
#include "kiln/core/error.h"

namespace kiln::cli {

int run_launch(const LaunchArgs& args) {
  KILN_CHECK(args.ranks >= 1, "launch: -n must be >= 1, got ", args.ranks);
  KILN_CHECK(!args.command.empty(), "launch: no command\nhelp: kiln launch -n 2 -- train CONFIG.toml");
  KILN_CHECK(args.command[0] != "launch", "launch: the command cannot be another launch");
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();

  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(args.ranks)};
  if (args.hostfile.empty()) {
    // One machine: more ranks than cores is allowed (each rank then gets fewer threads), and
    // ranks are not pinned to one core each, which would starve their intra-op threads.
    argv.insert(argv.end(), {"--oversubscribe", "--bind-to", "none"});
  } else {
    argv.insert(argv.end(), {"--hostfile", args.hostfile});
  }
  argv.insert(argv.end(), args.mpi_args.begin(), args.mpi_args.end());
  argv.push_back(self);
  argv.insert(argv.end(), args.command.begin(), args.command.end());

  // Containers often deny the ptrace rights Open MPI's single-copy shared memory needs (the
  // transfer then fails at run time); plain copies through shared memory always work.
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", /*overwrite=*/0);
  // mpirun refuses root unless told; containers commonly run as root.
  if (geteuid() == 0) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execvp("mpirun", cargv.data());
  throw BackendError(detail::concat("launch: cannot run mpirun (", std::strerror(errno),
                                    ")\nhelp: install openmpi-bin (scripts/setup.sh does)"));
}

}  // namespace kiln::cli
