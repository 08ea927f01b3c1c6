variable "name" {
  description = "Container name, also the prefix of its volumes and of the services file."
  type        = string
  default     = "maestro"

  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$", var.name))
    error_message = "name: letters, digits, '_', '.' and '-', starting with a letter or digit, at most 63 characters."
  }
}

variable "image" {
  description = "maestro-runtime image."
  type        = string
  default     = "ghcr.io/maestro-runtime/maestro-runtime:latest"
}

# The fields of one entry of the YAML services file (README "How projects are found").
# Attributes left out are not written, so the runtime's own defaults apply.
variable "services" {
  description = "Services to run: rendered to the YAML services file mounted at /etc/maestro/services.yml."
  type = list(object({
    repo          = string
    port          = optional(number)
    ref           = optional(string)
    name          = optional(string)
    user          = optional(string)
    cmd           = optional(string)
    env           = optional(map(string))
    health        = optional(string) # an HTTP path such as /healthz, or "tcp"
    autostart     = optional(bool)
    sha256        = optional(string)
    keep          = optional(list(string))
    allow_hosts   = optional(list(string))
    memory        = optional(string)
    cpu_quota_us  = optional(number)
    cpu_period_us = optional(number)
    pids_max      = optional(number)
    kind          = optional(string)      # "service" (default) or "task": runs once, never restarted
    schedule      = optional(string)      # tasks: a cron expression such as "*/5 * * * *"
    catch_up      = optional(bool)        # tasks: run once for a slot missed while the container was down
    depends_on    = optional(map(string)) # name = "started" | "healthy" | "completed"
    workspace     = optional(bool)        # a git source at a branch as a checkout it can commit to
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.services : s.port == null || (coalesce(s.port, 0) >= 1 && coalesce(s.port, 0) <= 65535)])
    error_message = "services: every port must be 1-65535 (leave it out to let the runtime pick one)."
  }
  validation {
    condition     = length(compact([for s in var.services : s.port == null ? "" : tostring(s.port)])) == length(distinct(compact([for s in var.services : s.port == null ? "" : tostring(s.port)])))
    error_message = "services: two services cannot have the same port."
  }
  validation {
    condition     = alltrue([for s in var.services : s.kind == null || contains(["service", "task"], coalesce(s.kind, "service"))])
    error_message = "services: kind must be service or task."
  }
  validation {
    condition     = alltrue([for s in var.services : alltrue([for c in values(coalesce(s.depends_on, {})) : contains(["started", "healthy", "completed"], c)])])
    error_message = "services: every depends_on condition must be started, healthy or completed."
  }
  validation {
    condition     = alltrue([for s in var.services : s.health == null || can(regex("^(tcp|/[^[:space:]]*)$", coalesce(s.health, "tcp")))])
    error_message = "services: health must be an HTTP path such as /healthz, or \"tcp\"."
  }
}

variable "ports" {
  description = "Ports to publish, container port = host port."
  type        = list(number)
  default     = [8000, 8001, 8002]
}

variable "bind_address" {
  description = "Host address the ports are published on (127.0.0.1: this host only)."
  type        = string
  default     = "0.0.0.0"
}

variable "url_host" {
  description = "Host name used in the service_urls output."
  type        = string
  default     = "localhost"
}

variable "env" {
  description = "Extra environment (MAESTRO_*, SERVICES, SVC_*, ...)."
  type        = map(string)
  default     = {}
}

variable "projects_host_path" {
  description = "Host folder of pre-seeded projects mounted at /opt/projects (null: a named volume)."
  type        = string
  default     = null
}

variable "restart" {
  description = "Restart policy: no, on-failure, always or unless-stopped."
  type        = string
  default     = "unless-stopped"

  validation {
    condition     = contains(["no", "on-failure", "always", "unless-stopped"], var.restart)
    error_message = "restart: one of no, on-failure, always, unless-stopped."
  }
}

variable "read_only" {
  description = "Read-only root filesystem (state lives in the volumes and the tmpfs mounts)."
  type        = bool
  default     = true
}

variable "no_new_privileges" {
  description = "Run with --security-opt no-new-privileges."
  type        = bool
  default     = true
}

variable "capabilities" {
  description = "Capabilities added back after dropping ALL. Per-project users need CHOWN SETUID SETGID DAC_OVERRIDE FOWNER KILL."
  type        = list(string)
  default     = ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL"]
}

variable "full_sandbox" {
  description = "Also grant SYS_ADMIN + NET_ADMIN with unconfined seccomp/apparmor so bubblewrap and the firewall work."
  type        = bool
  default     = false
}

variable "memory_mb" {
  description = "Memory limit of the whole container, in MiB."
  type        = number
  default     = 1024
}

variable "cpus" {
  description = "CPU limit of the whole container, e.g. \"1.0\"."
  type        = string
  default     = "1.0"
}

variable "pids_limit" {
  description = "Process limit of the whole container."
  type        = number
  default     = 512
}

variable "tmpfs" {
  description = "tmpfs mounts and their options; /run holds supervisord's socket and must stay."
  type        = map(string)
  default = {
    "/tmp" = "rw,noexec,nosuid,size=64m"
    "/run" = "rw,nosuid,size=16m"
  }
}

variable "stop_timeout" {
  description = "Seconds docker waits after SIGTERM before it kills the container."
  type        = number
  default     = 30
}

variable "healthcheck" {
  description = "The image's HEALTHCHECK timing (null: no healthcheck)."
  type = object({
    interval     = string
    timeout      = string
    start_period = string
    retries      = number
  })
  default = {
    interval     = "30s"
    timeout      = "5s"
    start_period = "20s"
    retries      = 3
  }
}
