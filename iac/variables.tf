variable "name" {
  description = "Container name (also the prefix of the volumes)."
  type        = string
  default     = "maestro"
}

variable "image" {
  description = "maestro-runtime image."
  type        = string
  default     = "ghcr.io/maestro-runtime/maestro-runtime:main"
}

variable "services" {
  description = "SERVICES: \"repo|port|ref|name|user|cmd;...\" (empty: pre-seeded projects only)."
  type        = string
  default     = ""
}

variable "env" {
  description = "Extra environment (MAESTRO_*, SVC_*, ...)."
  type        = map(string)
  default     = {}
}

variable "ports" {
  description = "Ports to publish, container port = host port."
  type        = list(number)
  default     = [8000, 8001, 8002]
}

variable "projects_host_path" {
  description = "Host folder of pre-seeded projects mounted at /opt/projects (null: a named volume)."
  type        = string
  default     = null
}

variable "hardened" {
  description = "Read-only root, no capabilities except var.capabilities, no-new-privileges, limits."
  type        = bool
  default     = true
}

variable "capabilities" {
  description = "Capabilities added when hardened. Per-project users need CHOWN SETUID SETGID DAC_OVERRIDE FOWNER KILL; the full sandbox also SYS_ADMIN NET_ADMIN (with seccomp/apparmor unconfined)."
  type        = list(string)
  default     = ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL"]
}

variable "full_sandbox" {
  description = "Grant SYS_ADMIN + NET_ADMIN and unconfined seccomp/apparmor so bubblewrap and the firewall work."
  type        = bool
  default     = false
}

variable "memory_mb" {
  type    = number
  default = 1024
}

variable "pids_limit" {
  type    = number
  default = 512
}
