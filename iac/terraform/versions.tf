terraform {
  required_version = ">= 1.3" # optional() object attributes

  required_providers {
    docker = {
      source  = "kreuzwerker/docker"
      version = ">= 3.6.0, < 4.0.0" # 3.x: the docker_container schema used here (cpus, mounts, healthcheck)
    }
    local = {
      source  = "hashicorp/local"
      version = ">= 2.4.0, < 3.0.0" # writes the services file that is bind-mounted into the container
    }
  }
}
