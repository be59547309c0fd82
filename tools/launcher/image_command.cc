#include "tools/launcher/image_command.h"

#include <cstdlib>

#include "layerdb/base/sys.h"

namespace strata::launcher {

namespace {

std::vector<std::string> Strings(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& v : j)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::string KeyOf(const std::string& kv) {
  return kv.substr(0, kv.find('='));
}

void SetEnv(std::vector<std::string>& env, const std::string& kv) {
  for (auto& e : env) {
    if (KeyOf(e) == KeyOf(kv)) {
      e = kv;
      return;
    }
  }
  env.push_back(kv);
}

}  // namespace

Result<ContainerCommand> ResolveCommand(const nlohmann::json& image_config,
                                        const CommandOverrides& o) {
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& cfg =
      image_config.contains("config") && image_config["config"].is_object()
          ? image_config["config"]
          : empty;
  ContainerCommand c;
  std::vector<std::string> entry =
      Strings(cfg.value("Entrypoint", nlohmann::json()));
  std::vector<std::string> cmd = Strings(cfg.value("Cmd", nlohmann::json()));
  if (o.entrypoint) {
    entry = o.entrypoint->empty() ? std::vector<std::string>{}
                                  : std::vector<std::string>{*o.entrypoint};
    cmd.clear();
  }
  if (!o.args.empty()) cmd = o.args;
  c.argv = entry;
  c.argv.insert(c.argv.end(), cmd.begin(), cmd.end());
  if (c.argv.empty())
    return Error(EINVAL, "run",
                 "no command: the image has no Entrypoint or Cmd; give one "
                 "after the image name");
  c.env = Strings(cfg.value("Env", nlohmann::json()));
  bool has_path = false;
  for (const auto& e : c.env)
    has_path = has_path || KeyOf(e) == "PATH";
  if (!has_path) c.env.insert(c.env.begin(), kDefaultPath);
  for (const auto& kv : o.env) {
    if (kv.find('=') == std::string::npos)
      return Error(EINVAL, "run", "-e " + kv + ": expected KEY=VALUE");
    SetEnv(c.env, kv);
  }
  c.cwd =
      !o.workdir.empty() ? o.workdir : cfg.value("WorkingDir", std::string());
  if (c.cwd.empty()) c.cwd = "/";
  c.user = !o.user.empty() ? o.user : cfg.value("User", std::string());
  return c;
}

Result<std::vector<std::string>> ReadEnvFile(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(path));
  std::vector<std::string> out;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (line.find('=') == std::string::npos) {
      const char* v = std::getenv(line.c_str());
      if (v == nullptr) continue;  // docker skips unset bare names
      line += "=" + std::string(v);
    }
    if (line[0] == '=')
      return Error(EINVAL, "env-file",
                   path + " line " + std::to_string(line_no) + ": no name");
    out.push_back(line);
  }
  return out;
}

}  // namespace strata::launcher
