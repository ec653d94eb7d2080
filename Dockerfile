# The capstone in a container: Python 3.11, requirements.txt, this repository and Jupyter.
#
#   docker build -t capstone .
#   docker run --rm -p 8888:8888 capstone
#
# then open the http://127.0.0.1:8888/...?token=... link it prints. To keep the course data
# between runs, mount it where the notebook (run from capstone/) looks for ../readonly:
#   docker run --rm -p 8888:8888 -v "$PWD/readonly:/home/learner/capstone/readonly" capstone
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# Java runs pycocoevalcap's PTB tokenizer and METEOR (see capstone/evaluation/metrics.py);
# the man directory is missing from slim images and the JRE's installer expects it.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends default-jre-headless \
    && rm -rf /var/lib/apt/lists/*

# Jupyter should not run as root, and the files it writes should belong to the learner.
RUN useradd --create-home --uid 1000 learner

WORKDIR /home/learner/capstone

# Requirements before the code, so that editing the code does not reinstall TensorFlow.
# The versions come from requirements.txt alone; jupyter's range matches conda_requirements.txt.
COPY requirements.txt ./
RUN pip install -r requirements.txt "jupyter>=1.1,<2"

COPY --chown=learner:learner . .
# The dependencies are installed above; this adds the capstone package itself.
RUN pip install --no-deps .

USER learner
EXPOSE 8888
CMD ["jupyter", "notebook", "--ip=0.0.0.0", "--port=8888", "--no-browser", "capstone/image_captioning.ipynb"]
