#pragma once
/// peft::Error hierarchy. The library never aborts and never prints to stdout: every failure is
/// one of these exceptions, whose what() names the field or object, the bad value and a hint.

#include <stdexcept>
#include <string>
#include <utility>

namespace peft {

/// Root of every exception peft-cpp throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A field of a config or an argument holds a value peft-cpp rejects (or a config file has a
/// wrong type / unknown key). what() reads `<subject>.<field> = <value>: <problem> (hint: ...)`.
/// `subject()` is what the field belongs to: "LoraConfig" (the default), "add_weighted_adapter",
/// "LlamaConfig", "peft-merge", ...; `field()` the dotted key (`r`, `eva_config.rho`), `value()`
/// the offending value as text.
class ConfigError : public Error {
 public:
  /// What Python PEFT would have raised for the same input: ValueError, TypeError (wrong type,
  /// unknown keyword, missing peft_type) or NotImplementedError (e.g. an unknown `bias`).
  enum class Kind { InvalidValue, WrongType, NotImplemented };

  /// An error about a LoraConfig field.
  ConfigError(std::string field, std::string value, const std::string& problem,
              const std::string& hint, Kind kind = Kind::InvalidValue)
      : ConfigError(kLoraConfig, field, value, problem, hint, kind) {}

  /// An error about field `field` of `subject` (another config, or a function's arguments):
  ///   throw ConfigError::about("add_weighted_adapter", "density", "-1", "Density should be >= 0", "...");
  static ConfigError about(const std::string& subject, const std::string& field,
                           const std::string& value, const std::string& problem,
                           const std::string& hint, Kind kind = Kind::InvalidValue) {
    return ConfigError(subject, field, value, problem, hint, kind);
  }

  /// The same error with a source location in front, e.g. `train.yaml:12:5: LoraConfig.r ...`.
  ConfigError located(const std::string& where) const {
    return ConfigError(Message{where + ": " + what()}, subject_, field_, value_, kind_);
  }

  const std::string& subject() const noexcept { return subject_; }
  const std::string& field() const noexcept { return field_; }
  const std::string& value() const noexcept { return value_; }
  Kind kind() const noexcept { return kind_; }

 protected:
  /// A whole message, for errors that word it their own way (naming a file, say).
  struct Message {
    std::string text;
  };
  ConfigError(Message message, std::string subject, std::string field, std::string value, Kind kind)
      : Error(message.text),
        subject_(std::move(subject)),
        field_(std::move(field)),
        value_(std::move(value)),
        kind_(kind) {}

 private:
  static constexpr const char* kLoraConfig = "LoraConfig";

  ConfigError(const std::string& subject, const std::string& field, const std::string& value,
              const std::string& problem, const std::string& hint, Kind kind)
      : ConfigError(Message{compose(subject, field, value, problem, hint)}, subject, field, value, kind) {}

  static std::string compose(const std::string& subject, const std::string& field,
                             const std::string& value, const std::string& problem,
                             const std::string& hint) {
    std::string m = subject + "." + field;
    if (!value.empty()) m += " = " + value;
    m += ": " + problem;
    if (!hint.empty()) m += " (hint: " + hint + ")";
    return m;
  }
  std::string subject_;
  std::string field_;
  std::string value_;
  Kind kind_;
};

/// Injection found nothing to adapt (PEFT's NoMatchingPeftModuleError, a ValueError there).
class TargetNotFoundError : public Error {
 public:
  using Error::Error;
};

/// A matched module cannot carry LoRA (a container, an activation, an unsupported layer type),
/// or a stock layer cannot be swapped safely.
class UnsupportedModuleError : public Error {
 public:
  using Error::Error;
};

/// Bytes or text on disk (JSON, YAML, safetensors) are malformed, unreadable or unwritable.
class SerializationError : public Error {
 public:
  using Error::Error;
};

}  // namespace peft
